"""Worker processes: `fhirgate serve --http --workers N` runs N stateless servers behind one port.

uvicorn's own multi-process mode binds the port once in a parent process and spawns N workers, each of
which imports `fhirgate.workers:worker_app` (a factory) and builds its own Gateway. `run_http`'s
arguments reach the workers through one environment variable holding a small JSON `WorkerConfig`: the
data location, the policy file, allow_writes, the bind host and the encryption key's *file* path. The
key itself never goes into that variable; a worker reads it the way `serve` does (`--key-file`, else
$FHIRGATE_DB_KEY_FILE, else $FHIRGATE_DB_KEY inherited from the parent's environment). A PostgreSQL
URL travels as given to `--data` (a password in it too: prefer ~/.pgpass or $PGPASSFILE).

What the workers share, and where:
- rate-limit buckets: in Redis (`[rate_limits] redis_url`); required with more than one worker, since
  per-process buckets would multiply every limit by N (break-glass grants use the same Redis);
- the store and proposals: the same SQLite files (WAL, busy timeout) or the same PostgreSQL database;
- the audit log: one hash chain; every append takes `BEGIN IMMEDIATE` and links to the head anchor;
- keys/ secrets (cursor, pseudonym, request-state, audit chain): created by the parent before any
  worker starts, so workers never race to create them.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlencode

from starlette.applications import Starlette

from fhirgate.config import DataDir, Settings
from fhirgate.core.policy.rules import Policy
from fhirgate.database import resolve_key
from fhirgate.errors import ConfigError
from fhirgate.location import Location, open_location

CONFIG_ENV = "FHIRGATE_WORKER_CONFIG"
WORKER_APP = "fhirgate.workers:worker_app"
MAX_WORKERS = 64
REDIS_HINT = (
    'set [rate_limits] redis_url = "redis://HOST:6379/0" in the policy file (a copy of the packaged '
    "fhirgate/core/policy/default_policy.toml, then `fhirgate serve --policy FILE` or fhirgate.toml "
    "[policy] file = ...); see docs/deployment.md, 'Many workers'"
)


@dataclass(frozen=True)
class WorkerConfig:
    """What every worker needs to build the same app as a single-process `serve` (never the key itself)."""

    data: str
    host: str = "127.0.0.1"
    policy_file: str | None = None
    allow_writes: bool = False
    key_file: str | None = None

    def to_json(self) -> str:
        """The config as the JSON text put in $FHIRGATE_WORKER_CONFIG."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> WorkerConfig:
        """Parse and type-check the JSON written by `to_json`; ConfigError on anything else."""
        try:
            raw = json.loads(text)
        except ValueError:
            raise ConfigError(f"${CONFIG_ENV} is not JSON") from None
        if not isinstance(raw, dict) or set(raw) != {"data", "host", "policy_file", "allow_writes", "key_file"}:
            raise ConfigError(f"${CONFIG_ENV} must hold data, host, policy_file, allow_writes and key_file")
        strings = ("data", "host")
        optional = ("policy_file", "key_file")
        if not all(isinstance(raw[k], str) and raw[k] for k in strings):
            raise ConfigError(f"${CONFIG_ENV}: data and host must be non-empty strings")
        if not all(raw[k] is None or isinstance(raw[k], str) for k in optional):
            raise ConfigError(f"${CONFIG_ENV}: policy_file and key_file must be strings or null")
        if not isinstance(raw["allow_writes"], bool):
            raise ConfigError(f"${CONFIG_ENV}: allow_writes must be true or false")
        return cls(**raw)

    @classmethod
    def from_env(cls) -> WorkerConfig:
        """The config the parent process left in the environment."""
        text = os.environ.get(CONFIG_ENV)
        if not text:
            raise ConfigError(f"${CONFIG_ENV} is not set: worker_app runs under `fhirgate serve --workers N`")
        return cls.from_json(text)


def worker_app() -> Starlette:
    """The uvicorn factory each worker calls: the same Starlette app as `serve --http`, from the env config."""
    from fhirgate.app import create_http_app

    config = WorkerConfig.from_env()
    return create_http_app(
        open_location(config.data),
        key=resolve_key(config.key_file),
        host=config.host,
        policy_file=config.policy_file,
        allow_writes=config.allow_writes,
    )


def data_location(location: Location) -> str:
    """The `--data` string a worker turns back into the same location: a directory or a PostgreSQL URL."""
    if isinstance(location, DataDir):
        return str(location.path)
    from fhirgate.location.postgres import PostgresLocation

    if isinstance(location, PostgresLocation):
        return location.url + ("&" if "?" in location.url else "?") + urlencode({"schema": location.schema})
    raise ConfigError(f"{location.name}: this kind of data location cannot be shared by worker processes")


def require_shared_limits(policy: Policy, workers: int) -> str:
    """Refuse more than one worker without a Redis URL for the buckets; return the redacted URL otherwise."""
    from fhirgate.ratelimit.redis_store import redact_url

    if policy.redis_url is None or not policy.redis_url.strip():
        raise ConfigError(
            f"--workers {workers} needs shared rate limits: each worker would keep its own buckets and every "
            f"limit would be multiplied by {workers}. To share them, {REDIS_HINT}"
        )
    return redact_url(policy.redis_url.strip())


def _key_file(key: str | None, key_file: str | None) -> str | None:
    """The key-file path workers read the key from; ConfigError when the key would not reach them."""
    path = str(Path(key_file).expanduser().resolve()) if key_file else None
    if key is not None and resolve_key(path) != key:
        raise ConfigError(
            "with --workers each worker reads the encryption key itself: give it as --key-file, "
            "$FHIRGATE_DB_KEY_FILE or $FHIRGATE_DB_KEY (it is never passed between processes)"
        )
    return path


def _preflight(data_dir: Location, settings: Settings, policy: Policy, key: str | None) -> None:
    """Build and close one gateway in the parent so errors stop the start and secrets exist before workers."""
    from fhirgate.app import build_gateway, build_verifier

    if build_verifier(data_dir, settings, role_claim=policy.role_claim) is None:
        raise ConfigError(
            "no trusted token issuer: add [[auth.issuers]] to fhirgate.toml or set auth.trust_dev_issuer = true"
        )
    build_gateway(data_dir, key=key, policy=policy).close()


def prepare_workers(
    data_dir: Location,
    settings: Settings,
    policy: Policy,
    *,
    workers: int,
    key: str | None,
    key_file: str | None,
    host: str,
    policy_file: str | None,
    allow_writes: bool,
) -> str:
    """Check and export the worker config, print the workers line, and return uvicorn's factory import string."""
    if not 1 < workers <= MAX_WORKERS:
        raise ConfigError(f"--workers must be between 2 and {MAX_WORKERS} here (got {workers})")
    where = require_shared_limits(policy, workers)
    config = WorkerConfig(
        data=data_location(data_dir),
        host=host,
        policy_file=str(Path(policy_file).expanduser().resolve()) if policy_file else None,
        allow_writes=allow_writes,
        key_file=_key_file(key, key_file),
    )
    _preflight(data_dir, settings, policy, key)
    os.environ[CONFIG_ENV] = config.to_json()
    print(describe_workers(workers, where), file=sys.stderr)
    return WORKER_APP


def describe_workers(workers: int, redis_where: str) -> str:
    """One line saying how many workers serve the port and that their limits are shared, printed on start."""
    return (
        f"workers: {workers} processes behind one port; rate limits shared through Redis at {redis_where}; "
        "store, proposals and the audit chain shared through the data location"
    )
