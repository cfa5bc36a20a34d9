"""The HTTP edge: a Starlette app serving MCP Streamable HTTP at /mcp as an OAuth 2.1 resource server.

- `/mcp`: stateless Streamable HTTP with JSON responses (MCP 2026-07-28 and 2025-11-25 clients).
  Before anything else: Host/Origin validation against DNS rebinding (MCP "Streamable HTTP" security
  warning: invalid Origin -> 403), then bearer-token verification (RFC 6750, audience = this
  server's resource URL per RFC 8707 / MCP "Token Audience Binding").
- 401 carries `WWW-Authenticate: Bearer resource_metadata="...", scope="..."` (MCP "Authorization",
  RFC 9728 §5.1), plus `error="invalid_token"` when a token was presented; a token without any SMART
  resource scope gets 403 `error="insufficient_scope"` naming the scope needed (RFC 6750 §3.1).
- `/.well-known/oauth-protected-resource/mcp` (and the root form): RFC 9728 metadata.
- `/healthz`: liveness, no data.
Every HTTP request to /mcp leaves exactly one audit record: the MCP middleware writes it for a
JSON-RPC request; otherwise (refused, malformed, notification) this edge writes a method 'http' one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from urllib.parse import urlparse

import anyio.to_thread
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhirgate.auth.tokens import TokenVerifier, to_access_token
from fhirgate.core.policy.principal import Principal
from fhirgate.errors import AuditError, AuthenticationError
from fhirgate.mcp.audit_hook import HTTP_STATE_KEY, HttpRequestState
from fhirgate.mcp.server import build_server
from fhirgate.service.auditing import AuditWriter
from fhirgate.service.gateway import Gateway

MCP_PATH = "/mcp"
# What a client should ask for when it has no token (RFC 6750 §3 `scope`); SMART App Launch 2.x.
CHALLENGE_SCOPE = "openid fhirUser user/*.rs"
SCOPES_SUPPORTED = (
    "openid",
    "fhirUser",
    "launch/patient",
    "patient/*.rs",
    "user/*.rs",
    "system/*.rs",
)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def metadata_url(resource_url: str) -> str:
    """RFC 9728 §3.1: insert /.well-known/oauth-protected-resource between host and path."""
    parsed = urlparse(resource_url)
    path = parsed.path.rstrip("/")
    return f"{parsed.scheme}://{parsed.netloc}/.well-known/oauth-protected-resource{path}"


def security_settings(
    resource_url: str, *, host: str = "127.0.0.1", allowed_origins: Sequence[str] = ()
) -> TransportSecuritySettings:
    """Host/Origin allowlists: loopback names plus the resource URL's own host, and configured origins."""
    parsed = urlparse(resource_url)
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost"]
    origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
    if parsed.netloc:
        hosts.append(parsed.netloc)
        origins.append(f"{parsed.scheme}://{parsed.netloc}")
    if host not in LOOPBACK_HOSTS and host not in ("0.0.0.0", "::"):  # noqa: S104 - names, not a bind
        hosts.append(f"{host}:*")
    origins.extend(allowed_origins)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=list(dict.fromkeys(hosts)),
        allowed_origins=list(dict.fromkeys(origins)),
    )


def _challenge(resource_metadata: str, *, error: str | None, description: str | None, scope: str) -> str:
    parts = [f'resource_metadata="{resource_metadata}"', f'scope="{scope}"']
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append(f'error_description="{description}"')
    return "Bearer " + ", ".join(parts)


def _outcome_for_status(status: int) -> str:
    if status < 400:
        return "success"
    if status in (401, 403, 421):
        return "denied"
    if status == 404:
        return "not-found"
    if status < 500:
        return "invalid"
    return "error"


class McpHttpEdge:
    """ASGI wrapper for /mcp: Origin/Host check, bearer auth, principal hand-off and per-request audit."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: TokenVerifier,
        writer: AuditWriter,
        resource_url: str,
        security: TransportSecuritySettings,
    ) -> None:
        self._app = app
        self._verifier = verifier
        self._writer = writer
        self._metadata = metadata_url(resource_url)
        self._security = TransportSecurityMiddleware(security)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        client = scope.get("client")
        state = HttpRequestState(uuid.uuid4().hex, None, f"{client[0]}" if client else None)
        request = Request(scope, receive)
        refused = await self._security.validate_request(request, is_post=False)
        if refused is not None:
            reason = "http.origin" if refused.status_code == 403 else "http.host"
            await self._refuse(state, started, refused, reason, scope, receive, send)
            return
        principal, token, problem = await self._authenticate(request)
        if principal is None:
            assert problem is not None
            await self._refuse(state, started, problem[0], problem[1], scope, receive, send)
            return
        state.principal = principal
        if request.method != "POST":
            # Stateless server: no standalone SSE stream (GET) and no session to delete (DELETE);
            # MCP "Streamable HTTP": a server that offers no GET stream answers 405.
            await self._write(state, started, "invalid", "http.405", request.method, principal)
            await Response(status_code=405, headers={"Allow": "POST"})(scope, receive, send)
            return
        scope[HTTP_STATE_KEY] = state
        status = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        # Also expose the principal the SDK's way (AuthenticatedUser + auth contextvar), so SDK features
        # that bind state to the caller (request-state sealing) and auth.tokens.current_principal() work.
        user = AuthenticatedUser(to_access_token(principal, token, self._verifier.audience))
        scope["user"] = user
        scope["auth"] = AuthCredentials(list(principal.scopes.tokens))
        reset = auth_context_var.set(user)
        try:
            await self._app(scope, receive, send_wrapper)
        finally:
            auth_context_var.reset(reset)
        if not state.audited:
            # Not a JSON-RPC request the MCP middleware saw: notification (202), GET/DELETE (405),
            # malformed body, wrong headers. Still one record.
            await self._write(state, started, _outcome_for_status(status), f"http.{status}", request.method, principal)

    async def _authenticate(self, request: Request) -> tuple[Principal | None, str, tuple[Response, str] | None]:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not header or scheme.lower() != "bearer" or not token.strip():
            # RFC 6750 §3.1: no error code when the request carried no credentials.
            challenge = _challenge(self._metadata, error=None, description=None, scope=CHALLENGE_SCOPE)
            body = {"error": "invalid_request", "error_description": "Bearer token required"}
            return None, "", (JSONResponse(body, 401, headers={"WWW-Authenticate": challenge}), "auth.missing_token")
        try:
            if self._verifier.may_block:
                principal = await anyio.to_thread.run_sync(self._verifier.verify, token.strip())
            else:
                principal = self._verifier.verify(token.strip())
        except AuthenticationError as exc:
            challenge = _challenge(
                self._metadata, error="invalid_token", description=exc.message, scope=CHALLENGE_SCOPE
            )
            body = {"error": "invalid_token", "error_description": exc.message}
            return None, "", (JSONResponse(body, 401, headers={"WWW-Authenticate": challenge}), exc.reason)
        if not principal.scopes.resources:
            # A valid token that grants no FHIR data at all (SMART App Launch 2.x resource scopes).
            description = "The token grants no SMART resource scope"
            challenge = _challenge(
                self._metadata, error="insufficient_scope", description=description, scope=CHALLENGE_SCOPE
            )
            body = {"error": "insufficient_scope", "error_description": description, "scope": CHALLENGE_SCOPE}
            return None, "", (JSONResponse(body, 403, headers={"WWW-Authenticate": challenge}), "scope.none")
        return principal, token.strip(), None

    async def _refuse(
        self,
        state: HttpRequestState,
        started: float,
        response: Response,
        reason: str,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        try:
            await self._write(state, started, "denied", reason, scope.get("method", "POST"), None)
        except AuditError:
            response = JSONResponse({"error": "server_error", "error_description": "audit log unavailable"}, 503)
        await response(scope, receive, send)

    async def _write(
        self,
        state: HttpRequestState,
        started: float,
        outcome: str,
        reason: str,
        http_method: str,
        principal: Principal | None,
    ) -> None:
        latency = (time.perf_counter() - started) * 1000.0

        def write() -> None:
            if principal is None:
                self._writer.write_unauthenticated(
                    request_id=state.request_id,
                    transport="http",
                    method="http",
                    name=http_method,
                    outcome=outcome,
                    reason=reason,
                    client_address=state.client_address,
                    latency_ms=latency,
                )
            else:
                from fhirgate.service.context import RequestContext

                ctx = RequestContext(
                    principal,
                    request_id=state.request_id,
                    transport="http",
                    method="http",
                    name=http_method,
                    client_address=state.client_address,
                )
                self._writer.write(ctx, outcome=outcome, interaction="http", reason=reason)

        await anyio.to_thread.run_sync(write)
        state.audited = True


def build_http_app(
    gateway: Gateway,
    *,
    verifier: TokenVerifier,
    resource_url: str,
    authorization_servers: Sequence[str],
    host: str = "127.0.0.1",
    allowed_origins: Sequence[str] = (),
    close_gateway: bool = False,
    fhir_api: bool = False,
) -> Starlette:
    """The Starlette app: /mcp (stateless JSON Streamable HTTP), protected resource metadata, /healthz;
    with `fhir_api`, the FHIR R4 REST API at /fhir under the same tokens, policy and audit (docs/fhir-api.md)."""
    server = build_server(gateway, transport="http")
    security = security_settings(resource_url, host=host, allowed_origins=allowed_origins)
    manager = StreamableHTTPSessionManager(
        app=server._lowlevel_server,
        json_response=True,
        stateless=True,
        security_settings=security,
    )
    edge = McpHttpEdge(
        StreamableHTTPASGIApp(manager),
        verifier=verifier,
        writer=gateway.audit,
        resource_url=resource_url,
        security=security,
    )
    document = {
        "resource": resource_url,
        "authorization_servers": list(authorization_servers),
        "scopes_supported": list(SCOPES_SUPPORTED),
        "bearer_methods_supported": ["header"],
        "resource_name": "fhirgate",
    }

    async def protected_resource(request: Request) -> Response:
        return JSONResponse(document, headers={"Cache-Control": "public, max-age=3600"})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    path = urlparse(resource_url).path.rstrip("/")
    routes = [
        Route(MCP_PATH, endpoint=edge),
        Route(f"/.well-known/oauth-protected-resource{path}", endpoint=protected_resource, methods=["GET"]),
        Route("/.well-known/oauth-protected-resource", endpoint=protected_resource, methods=["GET"]),
        Route("/healthz", endpoint=healthz, methods=["GET"]),
    ]
    if fhir_api:
        from fhirgate.fhirapi.edge import fhir_routes

        routes += fhir_routes(
            gateway,
            verifier=verifier,
            resource_url=resource_url,
            resource_metadata=metadata_url(resource_url),
            authorization_servers=list(authorization_servers),
            security=security,
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            async with manager.run():
                yield
        finally:
            if close_gateway:
                gateway.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.server = server
    app.state.manager = manager
    return app
