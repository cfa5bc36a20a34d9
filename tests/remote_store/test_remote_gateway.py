"""The real Gateway and MCP edge on a RemoteStore: policy, projections and consent apply to upstream data."""

from __future__ import annotations

from typing import Any

import pytest
from fake_upstream import FakeUpstream
from remote_support import PATIENT_A, USER, call, call_counted

from fhirgate.core.policy.rules import WRITE_TOOLS
from fhirgate.mcp.server import build_server
from fhirgate.service.gateway import ANALYTICS_TOOLS, Gateway
from mcp import Client

A, B, OPTED_OUT = "pat-000000", "pat-000001", "pat-000011"


def ids(result: Any) -> list[str]:
    assert not result.is_error, result.content
    return [e["id"] for e in result.structured_content["entries"]]


async def test_tools_list_hides_what_needs_the_embedded_store(remote_gateway: tuple[Gateway, FakeUpstream]) -> None:
    gateway, _ = remote_gateway
    async with Client(build_server(gateway, transport="in-memory", principal=USER)) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert "search_resources" in names and "patient_everything" in names
    assert not names & (ANALYTICS_TOOLS | WRITE_TOOLS)


@pytest.mark.parametrize("tool", ["query_sql", "list_views", "run_report"])
async def test_embedded_only_tools_give_a_clear_audited_error(
    remote_gateway: tuple[Gateway, FakeUpstream], tool: str
) -> None:
    gateway, _ = remote_gateway
    args = {"query_sql": {"sql": "SELECT 1"}, "list_views": {}, "run_report": {"name": "no_shows"}}[tool]
    result, audited = await call_counted(gateway, USER, tool, args)
    assert result.is_error
    assert "is not available on this server" in result.content[0].text
    assert audited == 1


async def test_search_agrees_with_the_embedded_store(
    remote_gateway: tuple[Gateway, FakeUpstream], embedded_gateway: Gateway
) -> None:
    gateway, _ = remote_gateway
    args = {"resource_type": "Condition", "params": {"subject": f"Patient/{A}"}, "count": 50}
    assert ids(await call(gateway, USER, "search_resources", args)) == ids(
        await call(embedded_gateway, USER, "search_resources", args)
    )


async def test_patient_scope_cannot_reach_another_patient(remote_gateway: tuple[Gateway, FakeUpstream]) -> None:
    gateway, _ = remote_gateway
    denied = await call(gateway, PATIENT_A, "read_resource", {"resource_type": "Patient", "id": B})
    assert denied.is_error and "not-found" in denied.content[0].text
    mine = await call(gateway, PATIENT_A, "search_resources", {"resource_type": "Observation", "count": 20})
    assert ids(mine)
    for entry in mine.structured_content["entries"]:
        assert A in str(entry)
    theirs = {"resource_type": "Observation", "params": {"subject": f"Patient/{B}"}}
    assert ids(await call(gateway, PATIENT_A, "search_resources", theirs)) == []


async def test_projection_and_consent_apply(
    remote_gateway: tuple[Gateway, FakeUpstream], embedded_gateway: Gateway
) -> None:
    gateway, _ = remote_gateway
    args = {"resource_type": "Patient", "id": A, "format": "compact"}
    remote = await call(gateway, USER, "read_resource", args)
    local = await call(embedded_gateway, USER, "read_resource", args)
    assert remote.structured_content == local.structured_content
    opted = await call(gateway, USER, "read_resource", {"resource_type": "Patient", "id": OPTED_OUT})
    assert opted.is_error and "not-found" in opted.content[0].text
    everyone = await call(gateway, USER, "search_resources", {"resource_type": "Patient", "count": 50})
    assert OPTED_OUT not in ids(everyone) and A in ids(everyone)


async def test_everything_and_paging(remote_gateway: tuple[Gateway, FakeUpstream], embedded_gateway: Gateway) -> None:
    gateway, _ = remote_gateway

    async def walk(gw: Gateway) -> list[str]:
        got: list[str] = []
        cursor = None
        while True:
            args: dict[str, Any] = {"patient_id": A, "types": ["Observation", "Encounter"], "count": 10}
            if cursor:
                args["cursor"] = cursor
            result = await call(gw, USER, "patient_everything", args)
            got += [f"{e['resourceType']}/{e['id']}" for e in result.structured_content["entries"]]
            cursor = result.structured_content["page"].get("next_cursor")
            if not cursor:
                return got

    remote, local = await walk(gateway), await walk(embedded_gateway)
    assert len(remote) > 10
    assert sorted(remote) == sorted(local)
