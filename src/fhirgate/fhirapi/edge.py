"""The HTTP edge of the FHIR API at /fhir: the same guarantees as /mcp, before any interaction runs.

Host/Origin validation against DNS rebinding (as /mcp), bearer-token verification with the same verifier and
audience (RFC 6750, 401 with `WWW-Authenticate`), content negotiation (FHIR R4 §3.1.0.1.7 / §3.1.6: JSON only,
`application/fhir+json` or `application/json`, `_format=json`; else 406 / 415), a body size bound, and exactly
one audit record per request. `GET /fhir/metadata` is public (FHIR R4 §3.1.0.8 capabilities: clients read it
to learn how to authorize) and carries no data; it is still recorded, with no principal.
"""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlparse

import anyio.to_thread
import orjson
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from fhirgate.auth.tokens import TokenVerifier
from fhirgate.core.policy.principal import Principal
from fhirgate.errors import AuditError, AuthenticationError
from fhirgate.fhirapi import bundles
from fhirgate.fhirapi.outcomes import FHIR_JSON, Reply, audit_outcome, outcome
from fhirgate.fhirapi.routes import FhirApi, FhirRequest
from fhirgate.service.auditing import AuditWriter
from fhirgate.service.context import RequestContext
from fhirgate.service.gateway import Gateway

FHIR_PATH = "/fhir"
MAX_BODY_BYTES = 2 * 1024 * 1024
CHALLENGE_SCOPE = "openid fhirUser user/*.rs"
_JSON_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})
_FORMATS = frozenset({"json", "application/json", "application/fhir+json", "application/fhir json"})
_ACCEPT_ANY = frozenset({"*/*", "application/*"})
_FORM = "application/x-www-form-urlencoded"


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def acceptable(accept: str | None, formats: list[str]) -> bool:
    """Whether the client takes FHIR JSON: `_format` (FHIR R4 §3.1.0.1.7) wins over Accept (RFC 9110 §12.5.1)."""
    if formats:
        return all(f.strip().lower() in _FORMATS for f in formats)
    if not accept or not accept.strip():
        return True
    wanted = {_media_type(part) for part in accept.split(",")}
    return bool(wanted & (_JSON_TYPES | _ACCEPT_ANY))


def _challenge(resource_metadata: str, error: str | None, description: str | None) -> str:
    parts = [f'resource_metadata="{resource_metadata}"', f'scope="{CHALLENGE_SCOPE}"']
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append(f'error_description="{description}"')
    return "Bearer " + ", ".join(parts)


class FhirHttpEdge:
    """ASGI app for /fhir and below: Origin/Host check, bearer auth, negotiation, the interaction, one audit record."""

    def __init__(
        self,
        api: FhirApi,
        *,
        verifier: TokenVerifier,
        writer: AuditWriter,
        resource_metadata: str,
        security: TransportSecuritySettings,
        capability: dict[str, Any],
    ) -> None:
        self._api = api
        self._verifier = verifier
        self._writer = writer
        self._metadata = resource_metadata
        self._security = TransportSecurityMiddleware(security)
        self._capability = capability

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        client = scope.get("client")
        address = f"{client[0]}" if client else None
        request_id = uuid.uuid4().hex
        request = Request(scope, receive)
        method = request.method
        path = tuple(s for s in str(scope["path"])[len(FHIR_PATH) :].split("/") if s)
        params = parse_qsl(request.url.query, keep_blank_values=True)
        formats = [v for k, v in params if k == "_format"]

        async def refuse(reply: Reply, reason: str) -> None:
            reply = await self._record_anonymous(reply, reason, request_id, method, address, started)
            await self._send(reply, scope, receive, send)

        refused = await self._security.validate_request(request, is_post=False)
        if refused is not None:
            status = refused.status_code
            message = "Origin not allowed" if status == 403 else "Host not allowed"
            await refuse(Reply(status, outcome("security", message)), "http.origin" if status == 403 else "http.host")
            return
        if path == ("metadata",):
            if method != "GET":
                await refuse(Reply(405, outcome("not-supported", "metadata is GET only"), {"Allow": "GET"}), "http.405")
            elif not acceptable(request.headers.get("accept"), formats):
                await refuse(Reply(406, outcome("not-supported", "only FHIR JSON is served")), "http.406")
            else:
                await refuse(Reply(200, self._capability), "fhir.metadata")
            return
        principal, problem = await self._authenticate(request)
        if principal is None:
            assert problem is not None
            await refuse(*problem)
            return
        ctx = RequestContext(
            principal, request_id=request_id, transport="http", method="fhir", name=method, client_address=address
        )
        reply = await self._negotiate(request, formats, params)
        if isinstance(reply, Reply):
            answer = await anyio.to_thread.run_sync(self._api.finish, ctx, reply)
        else:
            answer = await anyio.to_thread.run_sync(self._api.answer, ctx, reply)
        await self._send(answer, scope, receive, send)

    async def _negotiate(
        self, request: Request, formats: list[str], params: list[tuple[str, str]]
    ) -> Reply | FhirRequest:
        """The FhirRequest, or the 406/415/413/400 reply for what this server does not take."""
        if not acceptable(request.headers.get("accept"), formats):
            return Reply(406, outcome("not-supported", "only FHIR JSON is served (application/fhir+json)"))
        path = tuple(s for s in str(request.scope["path"])[len(FHIR_PATH) :].split("/") if s)
        body: Any = None
        if request.method in ("POST", "PUT", "PATCH"):
            ctype = _media_type(request.headers.get("content-type", ""))
            is_search = len(path) == 2 and path[1] == "_search"
            if ctype not in (_JSON_TYPES | ({_FORM} if is_search else set())):
                allowed = f"{_FORM} (search)" if is_search else "application/fhir+json"
                return Reply(415, outcome("not-supported", f"Content-Type {ctype or 'missing'}: use {allowed}"))
            raw = b""
            async for chunk in request.stream():
                raw += chunk
                if len(raw) > MAX_BODY_BYTES:
                    return Reply(413, outcome("too-costly", f"request body over {MAX_BODY_BYTES} bytes"))
            if ctype == _FORM:
                params = params + parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
            elif raw:
                try:
                    body = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    return Reply(400, outcome("structure", "the body is not valid JSON"))
        return FhirRequest(request.method, path, params, body, request.headers.get("if-match"))

    async def _authenticate(self, request: Request) -> tuple[Principal | None, tuple[Reply, str] | None]:
        """The principal, or the 401/403 reply (with WWW-Authenticate, RFC 6750 §3) and the audit reason."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not header or scheme.lower() != "bearer" or not token.strip():
            # RFC 6750 §3.1: no error code when the request carried no credentials.
            headers = {"WWW-Authenticate": _challenge(self._metadata, None, None)}
            return None, (Reply(401, outcome("login", "Bearer token required"), headers), "auth.missing_token")
        try:
            if self._verifier.may_block:
                principal = await anyio.to_thread.run_sync(self._verifier.verify, token.strip())
            else:
                principal = self._verifier.verify(token.strip())
        except AuthenticationError as exc:
            headers = {"WWW-Authenticate": _challenge(self._metadata, "invalid_token", exc.message)}
            return None, (Reply(401, outcome("login", exc.message), headers), exc.reason)
        if not principal.scopes.resources:
            description = "The token grants no SMART resource scope"
            headers = {"WWW-Authenticate": _challenge(self._metadata, "insufficient_scope", description)}
            return None, (Reply(403, outcome("forbidden", description, reason="scope.none"), headers), "scope.none")
        return principal, None

    async def _record_anonymous(
        self, reply: Reply, reason: str, request_id: str, method: str, address: str | None, started: float
    ) -> Reply:
        """The one record of a request answered before any principal was established."""

        def write() -> None:
            self._writer.write_unauthenticated(
                request_id=request_id,
                transport="http",
                method="fhir",
                name=method,
                outcome=audit_outcome(reply.status),
                reason=reason,
                client_address=address,
                latency_ms=(time.perf_counter() - started) * 1000.0,
            )

        try:
            await anyio.to_thread.run_sync(write)
        except AuditError:
            return Reply(503, outcome("transient", "audit log unavailable"))
        return reply

    @staticmethod
    async def _send(reply: Reply, scope: Scope, receive: Receive, send: Send) -> None:
        content = orjson.dumps(reply.body)
        response = Response(content, reply.status, headers=reply.headers, media_type=FHIR_JSON)
        await response(scope, receive, send)


def fhir_routes(
    gateway: Gateway,
    *,
    verifier: TokenVerifier,
    resource_url: str,
    resource_metadata: str,
    authorization_servers: list[str],
    security: TransportSecuritySettings,
) -> list[Route]:
    """The /fhir routes for build_http_app: base URL from the resource URL's origin (never from a Host header)."""
    parsed = urlparse(resource_url)
    base = f"{parsed.scheme}://{parsed.netloc}{FHIR_PATH}"
    capability = bundles.capability_statement(
        base,
        authorization_servers=authorization_servers,
        resource_metadata=resource_metadata,
        writes=gateway.governance.policy.writes.enabled,
    )
    edge = FhirHttpEdge(
        FhirApi(gateway, base),
        verifier=verifier,
        writer=gateway.audit,
        resource_metadata=resource_metadata,
        security=security,
        capability=capability,
    )
    return [Route(FHIR_PATH, endpoint=edge), Route(FHIR_PATH + "/{rest:path}", endpoint=edge)]
