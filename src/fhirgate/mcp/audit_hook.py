"""The MCP middleware that guarantees one audit record per request, allowed or refused.

It wraps every inbound JSON-RPC request (tools, resources, prompts, list and discover calls, the
2025 `initialize` handshake): it builds the RequestContext, exposes it to handlers through a
contextvar, and after the handler returns writes the request's record unless a service use case
already wrote it (RequestContext.audited). The record is written before the response leaves; if it
cannot be written the request fails. Notifications are not requests and get no record here
(over HTTP the edge still records the POST that carried one).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST
from pydantic import ValidationError

from fhirgate.core.policy.principal import Principal
from fhirgate.errors import AuditError
from fhirgate.service.auditing import AuditWriter
from fhirgate.service.context import RequestContext

CURRENT_REQUEST: ContextVar[RequestContext | None] = ContextVar("fhirgate_request", default=None)
HTTP_STATE_KEY = "fhirgate.http"


@dataclass(slots=True)
class HttpRequestState:
    """Per-HTTP-request state the HTTP edge puts in the ASGI scope for the MCP middleware."""

    request_id: str
    principal: Principal | None
    client_address: str | None
    audited: bool = False


def current_request() -> RequestContext:
    """The RequestContext of the MCP request being handled (set by AuditMiddleware)."""
    ctx = CURRENT_REQUEST.get()
    if ctx is None:
        raise MCPError(code=INTERNAL_ERROR, message="request context missing")
    return ctx


def http_state(ctx: ServerRequestContext[Any, Any]) -> HttpRequestState | None:
    """The HTTP edge's state for this request, or None on stdio and in-memory transports."""
    request = ctx.request
    scope = getattr(request, "scope", None)
    if isinstance(scope, Mapping):
        state = scope.get(HTTP_STATE_KEY)
        if isinstance(state, HttpRequestState):
            return state
    return None


def _name(method: str, params: Mapping[str, Any] | None) -> str | None:
    if not params:
        return None
    key = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}.get(method)
    value = params.get(key) if key else None
    return str(value)[:200] if value is not None else None


def _arguments(params: Mapping[str, Any] | None) -> dict[str, Any]:
    if not params:
        return {}
    return {k: v for k, v in params.items() if k != "_meta"}


def _interaction(method: str) -> str:
    return method.replace("/", ".")


class AuditMiddleware:
    """ServerMiddleware: one RequestContext and exactly one audit record per JSON-RPC request."""

    def __init__(
        self,
        writer: AuditWriter,
        *,
        transport: str,
        principal: Principal | None = None,
        principal_source: Callable[[ServerRequestContext[Any, Any]], Principal | None] | None = None,
    ) -> None:
        self._writer = writer
        self._transport = transport
        self._principal = principal
        self._source = principal_source

    def _resolve(self, ctx: ServerRequestContext[Any, Any], state: HttpRequestState | None) -> Principal | None:
        if state is not None:
            return state.principal
        if self._source is not None:
            found = self._source(ctx)
            if found is not None:
                return found
        return self._principal

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.request_id is None:  # a notification: not a request, nothing answered
            return await call_next(ctx)
        state = http_state(ctx)
        principal = self._resolve(ctx, state)
        request_id = state.request_id if state is not None else uuid.uuid4().hex
        name = _name(ctx.method, ctx.params)
        if principal is None:
            # Fail closed: an MCP request without an established principal never reaches a handler.
            await self._write_unauthenticated(request_id, ctx.method, name, state)
            raise MCPError(code=INVALID_REQUEST, message="no authenticated principal for this request")
        rctx = RequestContext(
            principal,
            request_id=request_id,
            transport=self._transport,
            method=ctx.method,
            name=name,
            client_address=state.client_address if state is not None else None,
        )
        token = CURRENT_REQUEST.set(rctx)
        try:
            result = await call_next(ctx)
        except MCPError as exc:
            code = exc.error.code
            outcome = "not-found" if code == INVALID_PARAMS and ctx.method == "resources/read" else "invalid"
            if code == INTERNAL_ERROR:
                outcome = "error"
            await self._finish(rctx, ctx, state, outcome, f"jsonrpc.{code}")
            raise
        except ValidationError:
            await self._finish(rctx, ctx, state, "invalid", "jsonrpc.invalid_params")
            raise
        except BaseException as exc:
            await self._finish(rctx, ctx, state, "error", f"internal.{type(exc).__name__}")
            raise
        finally:
            CURRENT_REQUEST.reset(token)
        failed = isinstance(result, Mapping) and bool(result.get("isError"))
        await self._finish(rctx, ctx, state, "invalid" if failed else "success", "tool.error" if failed else None)
        return result

    async def _finish(
        self,
        rctx: RequestContext,
        ctx: ServerRequestContext[Any, Any],
        state: HttpRequestState | None,
        outcome: str,
        reason: str | None,
    ) -> None:
        if not rctx.audited:
            try:
                # Shielded: a request cancelled mid-flight (client gone) still leaves its record.
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(
                        lambda: self._writer.write(
                            rctx,
                            outcome=outcome,
                            interaction=_interaction(ctx.method),
                            reason=reason,
                            arguments=_arguments(ctx.params),
                        )
                    )
            except AuditError:
                raise MCPError(
                    code=INTERNAL_ERROR, message="audit log unavailable: the request was not performed"
                ) from None
        if state is not None:
            state.audited = True

    async def _write_unauthenticated(
        self, request_id: str, method: str, name: str | None, state: HttpRequestState | None
    ) -> None:
        try:
            await anyio.to_thread.run_sync(
                lambda: self._writer.write_unauthenticated(
                    request_id=request_id,
                    transport=self._transport,
                    method=method,
                    name=name,
                    outcome="denied",
                    reason="auth.no_principal",
                    client_address=state.client_address if state is not None else None,
                    latency_ms=0.0,
                )
            )
        except AuditError:
            raise MCPError(code=INTERNAL_ERROR, message="audit log unavailable") from None
        if state is not None:
            state.audited = True
