"""Helpers for the remote-store tests: principals and in-memory MCP calls counting audit records."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.scopes import ScopeSet
from fhirgate.mcp.server import build_server
from fhirgate.service.gateway import Gateway
from mcp import Client

TODAY = dt.date(2025, 6, 30)
A = "pat-000000"


def principal(scope: str, *, patient: str | None = None) -> Principal:
    return Principal(sub="tester", issuer="urn:test", scopes=ScopeSet.parse(scope), client_id="tests", patient=patient)


USER = principal("user/*.rs")
PATIENT_A = principal("patient/*.rs", patient=A)


async def call(gateway: Gateway, who: Principal, tool: str, args: dict[str, Any]) -> Any:
    return (await call_counted(gateway, who, tool, args))[0]


async def call_counted(gateway: Gateway, who: Principal, tool: str, args: dict[str, Any]) -> tuple[Any, int]:
    """The tool result and how many audit records the call added (counted inside the session)."""
    log = gateway.audit_sink
    async with Client(build_server(gateway, transport="in-memory", principal=who)) as client:
        before = log.count()  # type: ignore[attr-defined]
        result = await client.call_tool(tool, args)
        return result, log.count() - before  # type: ignore[attr-defined]
