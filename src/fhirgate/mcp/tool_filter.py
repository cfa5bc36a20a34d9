"""tools/list shows a caller only the tools its role may call (the policy file's `tools`), so the model is not
offered tools that would only be refused. Calls are still checked by the service: this is presentation, not policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

from fhirgate.mcp.audit_hook import current_request
from fhirgate.service.gateway import Gateway


class ToolListFilter:
    """ServerMiddleware (after AuditMiddleware): narrows a tools/list result to the caller's role's tools."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        if ctx.method != "tools/list" or not isinstance(result, Mapping):
            return result
        allowed = self._gateway.visible_tools(current_request().principal)
        tools = result.get("tools")
        if allowed is None or not isinstance(tools, list):
            return result
        return {**result, "tools": [t for t in tools if isinstance(t, Mapping) and t.get("name") in allowed]}
