"""The `[upstream]` table of fhirgate.toml: which FHIR R4 server backs `serve`, and how fhirgate authenticates.

Parsed when the settings are read (fhirgate.config calls parse_upstream), so a bad table stops the server at
start. Secrets never live in the file: a private key is a PEM file path, a static token the NAME of an
environment variable. `serve --fhir-base URL` overrides `base_url`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from fhirgate.errors import ConfigError
from fhirgate.remote.auth import BackendServicesAuth, StaticTokenAuth, UpstreamAuth
from fhirgate.remote.client import FhirClient

if TYPE_CHECKING:
    from fhirgate.store.remote.store import RemoteStore

__all__ = [
    "AUTH_MODES",
    "NoAuth",
    "UpstreamSettings",
    "build_client",
    "describe_upstream",
    "open_remote_store",
    "parse_upstream",
]

AUTH_MODES = ("backend-services", "static", "none")
PAGING_MODES = ("auto", "offset", "links")
_LOOPBACK = ("localhost", "127.0.0.1", "::1")
_KEYS = {
    "base_url",
    "auth",
    "client_id",
    "token_url",
    "private_key_file",
    "alg",
    "kid",
    "scope",
    "token_env",
    "timeout",
    "paging",
}


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    """[upstream]: the base URL (None until `--fhir-base` gives one) and fhirgate's own credentials there."""

    base_url: str | None = None
    auth: str = "none"
    client_id: str | None = None
    token_url: str | None = None  # None: discovered from <base>/.well-known/smart-configuration
    private_key_file: str | None = None
    alg: str = "RS384"
    kid: str | None = None
    scope: str = "system/*.rs"
    token_env: str | None = None
    timeout: float = 10.0
    paging: str = "auto"


class NoAuth:
    """No credentials (auth = "none"): only for an upstream on this machine (a loopback URL)."""

    def headers(self) -> dict[str, str]:
        return {}

    def invalidate(self) -> None:
        """Nothing to refresh."""


def _text(table: Mapping[str, Any], key: str, fail: Callable[[str], ConfigError]) -> str | None:
    value = table.get(key)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise fail(f"upstream.{key} must be a non-empty string")
    return value


def parse_upstream(raw: Any, fail: Callable[[str], ConfigError]) -> UpstreamSettings | None:
    """The [upstream] table checked (unknown keys, auth mode, required fields), or None when absent."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise fail("[upstream] must be a table")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise fail(f"upstream: unknown keys {unknown} (allowed: {', '.join(sorted(_KEYS))})")
    auth = raw.get("auth", "none")
    if auth not in AUTH_MODES:
        raise fail(f"upstream.auth must be one of {', '.join(AUTH_MODES)}")
    base = _text(raw, "base_url", fail)
    if base is not None and not base.startswith(("https://", "http://")):
        raise fail("upstream.base_url must be an https URL (http only to localhost)")
    alg = raw.get("alg", "RS384")
    if alg not in ("RS384", "ES384"):
        raise fail("upstream.alg must be RS384 or ES384 (SMART Backend Services)")
    timeout = raw.get("timeout", 10.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 300:
        raise fail("upstream.timeout must be a number of seconds in (0, 300]")
    paging = raw.get("paging", "auto")
    if paging not in PAGING_MODES:
        raise fail(f"upstream.paging must be one of {', '.join(PAGING_MODES)}")
    settings = UpstreamSettings(
        base_url=base,
        auth=auth,
        client_id=_text(raw, "client_id", fail),
        token_url=_text(raw, "token_url", fail),
        private_key_file=_text(raw, "private_key_file", fail),
        alg=alg,
        kid=_text(raw, "kid", fail),
        scope=_text(raw, "scope", fail) or "system/*.rs",
        token_env=_text(raw, "token_env", fail),
        timeout=float(timeout),
        paging=paging,
    )
    if auth == "backend-services":
        missing = [k for k in ("client_id", "private_key_file", "kid") if getattr(settings, k) is None]
        if missing:
            raise fail(f"upstream.auth = 'backend-services' needs {', '.join(missing)}")
    if auth == "static" and settings.token_env is None:
        raise fail("upstream.auth = 'static' needs token_env: the NAME of the environment variable holding the token")
    return settings


def _auth(settings: UpstreamSettings, base_url: str, data_path: Path, environ: Mapping[str, str]) -> UpstreamAuth:
    """fhirgate's credentials for the upstream, read from the key file or environment now (never logged)."""
    if settings.auth == "none":
        if httpx.URL(base_url).host not in _LOOPBACK:
            raise ConfigError("upstream.auth = 'none' is only allowed for a loopback URL (localhost, 127.0.0.1, ::1)")
        return NoAuth()
    if settings.auth == "static":
        assert settings.token_env is not None
        token = environ.get(settings.token_env)
        if not token:
            raise ConfigError(f"upstream.token_env: the environment variable {settings.token_env} is not set")
        return StaticTokenAuth(token)
    assert settings.private_key_file is not None
    assert settings.client_id is not None
    assert settings.kid is not None
    path = Path(settings.private_key_file).expanduser()
    path = path if path.is_absolute() else data_path / path
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"upstream.private_key_file: cannot read {path} ({exc.strerror})") from None
    return BackendServicesAuth(
        client_id=settings.client_id,
        private_key=pem,
        kid=settings.kid,
        scopes=settings.scope,
        algorithm=settings.alg,
        token_endpoint=settings.token_url,
        fhir_base=None if settings.token_url else base_url,
        timeout=settings.timeout,
    )


def build_client(
    settings: UpstreamSettings | None,
    data_path: Path,
    *,
    base_url: str | None = None,
    environ: Mapping[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> FhirClient:
    """The FhirClient for `serve`: `base_url` (serve --fhir-base) over [upstream] base_url, with its auth."""
    settings = settings or UpstreamSettings()
    if base_url is not None:
        settings = replace(settings, base_url=base_url)
    if settings.base_url is None:
        raise ConfigError("no upstream FHIR server: give serve --fhir-base URL or [upstream] base_url")
    auth = _auth(settings, settings.base_url, data_path, os.environ if environ is None else environ)
    return FhirClient(settings.base_url, auth, timeout=settings.timeout, transport=transport)


def _base(settings: UpstreamSettings | None, fhir_base: str | None) -> str | None:
    """The upstream base URL in effect: serve --fhir-base, else [upstream] base_url, else None (embedded)."""
    return fhir_base if fhir_base is not None else (settings.base_url if settings is not None else None)


def open_remote_store(
    settings: UpstreamSettings | None, base_dir: Path, fhir_base: str | None = None
) -> RemoteStore | None:
    """The RemoteStore `serve` runs on when an upstream is named (--fhir-base or [upstream] base_url), else None."""
    if _base(settings, fhir_base) is None:
        return None
    from fhirgate.store.remote.store import RemoteStore

    client = build_client(settings, base_dir, base_url=fhir_base)
    return RemoteStore(client, paging=(settings or UpstreamSettings()).paging)


def describe_upstream(settings: UpstreamSettings | None, fhir_base: str | None = None) -> str | None:
    """One line for `serve` on start: the upstream base URL and auth mode (never a token, key or secret)."""
    base = _base(settings, fhir_base)
    if base is None:
        return None
    mode = (settings or UpstreamSettings()).auth
    detail = {
        "backend-services": "SMART Backend Services (client_credentials, private_key_jwt)",
        "static": "a static bearer token from the environment",
        "none": "no credentials (loopback only)",
    }[mode]
    return (
        f"FHIR backend: remote {base.rstrip('/')} (auth: {mode}, {detail}); read-only: analytics (SQL views, "
        "reports) and write tools are not available"
    )
