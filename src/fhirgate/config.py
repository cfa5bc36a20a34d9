"""The data directory: where the store, the audit database, keys and settings live.

Layout (created on first use, secrets with mode 0600):
    fhirgate.toml     settings: this server's resource URL, trusted token issuers
    store.db          FHIR resources and search indexes
    audit.db          the hash-chained audit log, apart from clinical data
    keys/             dev-issuer signing key, cursor and audit-chain secrets
"""

from __future__ import annotations

import os
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli_w

from fhirgate.errors import ConfigError

if TYPE_CHECKING:
    from fhirgate.auth.devissuer import DevIssuer
    from fhirgate.auth.tokens import TrustedIssuer
    from fhirgate.remote.settings import UpstreamSettings

DEFAULT_DATA_DIR = "./fhirgate-data"
DEFAULT_RESOURCE_URL = "http://127.0.0.1:8765/mcp"
SETTINGS_FILE = "fhirgate.toml"


@dataclass(frozen=True, slots=True)
class IssuerSettings:
    """A token issuer this server trusts: keys from a JWKS URL or a PEM public key file."""

    issuer: str
    jwks_url: str | None = None
    public_key_file: str | None = None
    algorithms: tuple[str, ...] = ("RS256", "ES256")


@dataclass(frozen=True, slots=True)
class Settings:
    """Values read from fhirgate.toml; absent keys take the documented defaults."""

    resource_url: str = DEFAULT_RESOURCE_URL
    trust_dev_issuer: bool = False
    issuers: tuple[IssuerSettings, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    # [policy] file: the governance policy (docs/policy.md), relative to the data directory; None = the default.
    policy_file: str | None = None
    # [upstream]: a remote FHIR R4 server as the backend (docs/remote-fhir.md); None = the embedded store.
    upstream: UpstreamSettings | None = None


def _parse_settings(raw: dict[str, Any], source: Path) -> Settings:
    def fail(msg: str) -> ConfigError:
        return ConfigError(f"{source}: {msg}")

    server = raw.get("server", {})
    auth = raw.get("auth", {})
    if not isinstance(server, dict) or not isinstance(auth, dict):
        raise fail("[server] and [auth] must be tables")
    resource_url = server.get("resource_url", DEFAULT_RESOURCE_URL)
    if not isinstance(resource_url, str) or not resource_url.startswith(("http://", "https://")):
        raise fail("server.resource_url must be an http(s) URL")
    origins = server.get("allowed_origins", [])
    if not isinstance(origins, list) or not all(isinstance(o, str) for o in origins):
        raise fail("server.allowed_origins must be a list of origins")
    trust_dev = auth.get("trust_dev_issuer", False)
    if not isinstance(trust_dev, bool):
        raise fail("auth.trust_dev_issuer must be true or false")
    issuers: list[IssuerSettings] = []
    for i, item in enumerate(auth.get("issuers", [])):
        if not isinstance(item, dict) or not isinstance(item.get("issuer"), str):
            raise fail(f"auth.issuers[{i}] needs an 'issuer' string")
        jwks, pem = item.get("jwks_url"), item.get("public_key_file")
        if (jwks is None) == (pem is None):
            raise fail(f"auth.issuers[{i}] needs exactly one of 'jwks_url' or 'public_key_file'")
        algs = tuple(item.get("algorithms", ["RS256", "ES256"]))
        bad = [a for a in algs if a not in ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256")]
        if bad:
            raise fail(f"auth.issuers[{i}].algorithms: {bad} not allowed (asymmetric RS*/ES*/PS256 only)")
        issuers.append(IssuerSettings(item["issuer"], jwks, pem, algs))
    policy = raw.get("policy", {})
    if not isinstance(policy, dict):
        raise fail("[policy] must be a table")
    policy_file = policy.get("file")
    if policy_file is not None and (not isinstance(policy_file, str) or not policy_file):
        raise fail("policy.file must be the path of a policy file (TOML; see `fhirgate policy show`)")
    from fhirgate.remote.settings import parse_upstream

    upstream = parse_upstream(raw.get("upstream"), fail)
    return Settings(resource_url.rstrip("/"), trust_dev, tuple(issuers), tuple(origins), raw, policy_file, upstream)


def parse_settings(raw: dict[str, Any], source: str) -> Settings:
    """Validate fhirgate.toml content kept elsewhere than a file (a database); errors name `source`."""
    return _parse_settings(raw, Path(source))


class DataDir:
    """A fhirgate data directory; creates its layout on demand."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser().resolve()

    @property
    def name(self) -> str:
        """How messages name this location: the directory path."""
        return str(self.path)

    @property
    def base_dir(self) -> Path:
        """Relative paths in fhirgate.toml are relative to the data directory."""
        return self.path

    @property
    def is_database(self) -> bool:
        """A data directory keeps its state in local SQLite files."""
        return False

    @property
    def store_path(self) -> Path:
        return self.path / "store.db"

    @property
    def audit_path(self) -> Path:
        return self.path / "audit.db"

    @property
    def keys_dir(self) -> Path:
        return self.path / "keys"

    @property
    def settings_path(self) -> Path:
        return self.path / SETTINGS_FILE

    def ensure(self) -> DataDir:
        """Create the directory and keys folder (0700) if missing."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.keys_dir.mkdir(mode=0o700, exist_ok=True)
        return self

    def exists(self) -> bool:
        return self.store_path.exists()

    def settings(self) -> Settings:
        """Settings from fhirgate.toml, or defaults when the file is absent."""
        if not self.settings_path.exists():
            return Settings()
        try:
            raw = tomllib.loads(self.settings_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{self.settings_path}: invalid TOML ({exc})") from None
        return _parse_settings(raw, self.settings_path)

    def update_settings(self, section: str, values: dict[str, Any]) -> Settings:
        """Merge values into one [section] of fhirgate.toml and return the validated result."""
        self.ensure()
        raw: dict[str, Any] = {}
        if self.settings_path.exists():
            raw = tomllib.loads(self.settings_path.read_text(encoding="utf-8"))
        raw.setdefault(section, {}).update(values)
        parsed = _parse_settings(raw, self.settings_path)
        self.settings_path.write_text(tomli_w.dumps(raw), encoding="utf-8")
        return parsed

    def dev_issuer(self) -> DevIssuer:
        """The local development token issuer, its key pair kept in keys/ (created on first use)."""
        from fhirgate.auth.devissuer import DevIssuer

        return DevIssuer.load_or_create(self.keys_dir)

    def dev_trusted_issuer(self) -> TrustedIssuer:
        """The development issuer from the public JWKS in keys/ (what a server needs to verify its tokens)."""
        from fhirgate.auth.devissuer import load_trusted_issuer

        return load_trusted_issuer(self.keys_dir)

    def secret(self, name: str, nbytes: int = 32) -> bytes:
        """A named random secret kept in keys/ (created 0600 on first use)."""
        self.ensure()
        path = self.keys_dir / f"{name}.secret"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(nbytes))
        data = path.read_bytes()
        if len(data) < 16:
            raise ConfigError(f"secret {path.name} is too short; delete it to regenerate")
        return data
