"""Wiring: build the Gateway, the MCP server and its transports from a data directory.

The CLI (`fhirgate serve`) calls `run_stdio` / `run_http`; tests and embedders use `build_gateway`,
`build_verifier` and `create_http_app` directly.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import anyio
from starlette.applications import Starlette

from fhirgate.auth.principal_builder import ROLE_CLAIM
from fhirgate.auth.tokens import TokenVerifier, TrustedIssuer
from fhirgate.config import Settings
from fhirgate.core.policy.rules import Policy
from fhirgate.errors import ConfigError
from fhirgate.location import Location
from fhirgate.location.backends import open_audit, open_proposals, open_view_replica
from fhirgate.mcp.http import LOOPBACK_HOSTS, build_http_app
from fhirgate.mcp.server import build_server
from fhirgate.mcp.stdio import stdio_principal
from fhirgate.policy_loader import load_policy
from fhirgate.remote.settings import describe_upstream, open_remote_store
from fhirgate.service.gateway import Gateway
from fhirgate.service.governance import Governance
from fhirgate.store.contract import FhirStore
from fhirgate.store.factory import open_store

if TYPE_CHECKING:
    from fhirgate.analytics.views.replica import ViewReplica


def resolve_policy(
    data_dir: Location, settings: Settings | None = None, override: str | None = None, *, allow_writes: bool = False
) -> Policy:
    """The governance policy: `override` (serve --policy), else fhirgate.toml [policy] file, else the default.

    A relative path in fhirgate.toml is relative to the data directory. An invalid policy raises PolicyError
    listing every problem, so the server refuses to start (issue 5: never run on a policy it cannot read).
    `allow_writes` (serve --allow-writes) turns write tools on whatever the file's [writes] says.
    """
    settings = settings or data_dir.settings()
    chosen = override or settings.policy_file
    if chosen is None:
        policy = load_policy(None)
    else:
        path = Path(chosen).expanduser()
        if override is None and not path.is_absolute():
            path = data_dir.base_dir / path
        policy = load_policy(path)
    return policy.with_writes_enabled() if allow_writes else policy


def describe_writes(policy: Policy) -> str:
    """One line saying whether write tools are on and for which roles, printed by `serve` on start."""
    if not policy.writes.enabled:
        return (
            "writes: off, the server is read-only (write tools are not listed; `--allow-writes` or "
            "[writes] enabled = true turns them on)"
        )
    roles = ", ".join(r.name for r in policy.roles.values() if r.write_types) or "none (no role has write_types)"
    return (
        "writes: ENABLED; every write is a proposal that the user confirms or another human approves "
        f"(`fhirgate approvals`); roles that may propose writes: {roles}"
    )


def build_gateway(
    data_dir: Location, *, key: str | None, policy: Policy | None = None, store: FhirStore | None = None
) -> Gateway:
    """The Gateway over the data directory's store and audit log (the store must exist), under `policy`.

    `store` (a RemoteStore for `serve --fhir-base`) replaces the data directory's store; the data directory
    still holds the audit log, keys, settings and proposals.
    """
    policy = policy or resolve_policy(data_dir)
    if store is None:
        store = open_store(data_dir, key=key, create=False)
    try:
        audit = open_audit(data_dir, key=key)
        governance = Governance(policy, store)
    except Exception:
        store.close()
        raise
    try:
        proposals = open_proposals(data_dir, key=key)
    except Exception:
        store.close()
        audit.close()
        raise
    return Gateway(
        store,
        audit,
        data_dir.secret("cursor"),
        governance=governance,
        pseudonym_secret=data_dir.secret("pseudonym"),
        proposals=proposals,
        request_state_key=data_dir.secret("request-state"),
        views_replica=views_replica(data_dir, store),
    )


def views_replica(location: Location, store: FhirStore) -> Callable[[], ViewReplica] | None:
    """How to open the analytics views replica of a PostgreSQL location's store (None for any other store)."""
    if not location.is_database or not callable(getattr(store, "connection_args", None)):
        return None
    return functools.partial(open_view_replica, location, store)


def trusted_issuers(data_dir: Location, settings: Settings) -> list[TrustedIssuer]:
    """Issuers from fhirgate.toml [auth], plus the local dev issuer when trust_dev_issuer is set."""
    issuers: list[TrustedIssuer] = []
    for item in settings.issuers:
        if item.jwks_url is not None:
            issuers.append(TrustedIssuer(item.issuer, jwks_url=item.jwks_url, algorithms=item.algorithms))
        else:
            pem_path = Path(str(item.public_key_file)).expanduser()
            if not pem_path.is_absolute():
                pem_path = data_dir.base_dir / pem_path
            try:
                pem = pem_path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"issuer {item.issuer}: cannot read {pem_path} ({exc.strerror})") from None
            issuers.append(TrustedIssuer(item.issuer, public_key_pem=pem, algorithms=item.algorithms))
    if settings.trust_dev_issuer:
        issuers.append(data_dir.dev_trusted_issuer())
    return issuers


def build_verifier(
    data_dir: Location, settings: Settings | None = None, *, role_claim: str = ROLE_CLAIM
) -> TokenVerifier | None:
    """A TokenVerifier for this server's audience (settings.resource_url), or None without issuers."""
    settings = settings or data_dir.settings()
    issuers = trusted_issuers(data_dir, settings)
    return TokenVerifier(issuers, settings.resource_url, role_claim=role_claim) if issuers else None


def describe_issuers(data_dir: Location, settings: Settings) -> str:
    """One line naming the issuers whose tokens this server accepts, printed by `serve` on start."""
    names = [i.issuer for i in settings.issuers]
    if settings.trust_dev_issuer:
        dev = data_dir.dev_trusted_issuer().issuer
        names.append(f"{dev} (local development issuer: `fhirgate token`; not for production)")
    return "trusted token issuers: " + ("; ".join(names) if names else "none")


def create_http_app(
    data_dir: Location,
    *,
    key: str | None,
    host: str = "127.0.0.1",
    policy_file: str | None = None,
    allow_writes: bool = False,
    fhir_base: str | None = None,
    fhir_api: bool = False,
) -> Starlette:
    """The Starlette app for `fhirgate serve --http` (the gateway closes with the app's lifespan); `fhir_api`
    also serves the FHIR R4 REST API at /fhir (docs/fhir-api.md)."""
    settings = data_dir.settings()
    policy = resolve_policy(data_dir, settings, policy_file, allow_writes=allow_writes)
    return _http_app(data_dir, settings, policy, key=key, host=host, fhir_base=fhir_base, fhir_api=fhir_api)


def _http_app(
    data_dir: Location,
    settings: Settings,
    policy: Policy,
    *,
    key: str | None,
    host: str,
    fhir_base: str | None = None,
    fhir_api: bool = False,
) -> Starlette:
    """The Starlette app under an already resolved policy (run_http reports the policy's writes line)."""
    verifier = build_verifier(data_dir, settings, role_claim=policy.role_claim)
    if verifier is None:
        raise ConfigError(
            "no trusted token issuer: add [[auth.issuers]] to fhirgate.toml or set auth.trust_dev_issuer = true"
        )
    remote = open_remote_store(settings.upstream, data_dir.base_dir, fhir_base)  # None: the embedded store
    gateway = build_gateway(data_dir, key=key, policy=policy, store=remote)
    return build_http_app(
        gateway,
        verifier=verifier,
        resource_url=settings.resource_url,
        authorization_servers=[i.issuer for i in trusted_issuers(data_dir, settings)],
        host=host,
        allowed_origins=settings.allowed_origins,
        close_gateway=True,
        fhir_api=fhir_api,
    )


def run_http(
    data_dir: Location,
    *,
    key: str | None,
    host: str = "127.0.0.1",
    port: int = 8765,
    certfile: str | None = None,
    keyfile: str | None = None,
    policy_file: str | None = None,
    allow_writes: bool = False,
    workers: int = 1,
    key_file: str | None = None,
    fhir_base: str | None = None,
    fhir_api: bool = False,
    **uvicorn_options: Any,
) -> None:
    """Serve Streamable HTTP with uvicorn until interrupted; TLS when certfile and keyfile are given.

    With `workers` > 1, uvicorn runs that many processes behind the port, each building its own app from
    the config fhirgate.workers exports (the key is read by each worker from `key_file` or the environment).
    """
    import uvicorn

    if bool(certfile) != bool(keyfile):
        raise ConfigError("give both certfile and keyfile for HTTPS")
    settings = data_dir.settings()
    policy = resolve_policy(data_dir, settings, policy_file, allow_writes=allow_writes)
    app: Starlette | str
    if workers > 1 and fhir_base is not None:
        raise ConfigError("--fhir-base with several --workers: set [upstream] base_url in fhirgate.toml instead")
    if workers > 1 and fhir_api:
        raise ConfigError("--fhir-api with several --workers is not supported yet; serve it with one worker")
    if workers > 1:
        from fhirgate.workers import prepare_workers

        app = prepare_workers(
            data_dir,
            settings,
            policy,
            workers=workers,
            key=key,
            key_file=key_file,
            host=host,
            policy_file=policy_file,
            allow_writes=allow_writes,
        )
    else:
        app = _http_app(data_dir, settings, policy, key=key, host=host, fhir_base=fhir_base, fhir_api=fhir_api)
    resource_url = settings.resource_url
    parsed = urlparse(resource_url)
    default_port = 443 if parsed.scheme == "https" else 80
    if host in LOOPBACK_HOSTS and (parsed.port or default_port) != port:
        print(
            f"warning: server.resource_url is {resource_url} but the server listens on port {port}; tokens "
            "must carry that URL as audience and clients discover metadata there (set server.resource_url).",
            file=sys.stderr,
        )
    if host not in LOOPBACK_HOSTS and not certfile:
        print(
            f"warning: serving plain HTTP on {host}; bearer tokens and PHI cross the network unencrypted. "
            "Use --certfile/--keyfile or a TLS-terminating proxy.",
            file=sys.stderr,
        )
    scheme = "https" if certfile else "http"
    print(f"fhirgate serving MCP at {scheme}://{host}:{port}/mcp (resource {resource_url})", file=sys.stderr)
    if fhir_api:
        print(f"fhirgate serving the FHIR R4 API at {scheme}://{host}:{port}/fhir (same tokens)", file=sys.stderr)
    print(describe_issuers(data_dir, settings), file=sys.stderr)
    print(describe_writes(policy), file=sys.stderr)
    if (upstream := describe_upstream(settings.upstream, fhir_base)) is not None:
        print(upstream, file=sys.stderr)
    uvicorn.run(
        app,
        host=host,
        port=port,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
        workers=workers,
        factory=workers > 1,
        log_level=uvicorn_options.pop("log_level", "warning"),
        **uvicorn_options,
    )


def run_stdio(
    data_dir: Location,
    *,
    key: str | None,
    token: str | None = None,
    profile: str | None = None,
    policy_file: str | None = None,
    allow_writes: bool = False,
    fhir_base: str | None = None,
) -> None:
    """Serve one client over stdin/stdout as the principal from `token` or `profile` (one is required)."""
    settings = data_dir.settings()
    policy = resolve_policy(data_dir, settings, policy_file, allow_writes=allow_writes)
    principal = stdio_principal(
        token=token,
        profile=profile,
        verifier=build_verifier(data_dir, settings, role_claim=policy.role_claim) if token else None,
        profiles=settings.extra.get("profiles", {}),
    )
    remote = open_remote_store(settings.upstream, data_dir.base_dir, fhir_base)  # None: the embedded store
    gateway = build_gateway(data_dir, key=key, policy=policy, store=remote)
    # stdout carries the protocol: start-up notes go to stderr.
    print(f"fhirgate serving MCP over stdio as {principal.sub} ({principal.issuer})", file=sys.stderr)
    print(describe_writes(policy), file=sys.stderr)
    if (upstream := describe_upstream(settings.upstream, fhir_base)) is not None:
        print(upstream, file=sys.stderr)
    try:
        server = build_server(gateway, transport="stdio", principal=principal)
        anyio.run(server.run_stdio_async)
    finally:
        gateway.close()
