"""The three SQL tools over MCP in process: schemas, annotations, structuredContent + text, errors without PHI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from sql_support import FakeStore, ListSink, principal

from fhirgate.mcp.analytics_tools import ANALYTICS_TOOL_NAMES
from fhirgate.mcp.server import build_server
from fhirgate.service.gateway import Gateway
from mcp import Client


@pytest.fixture
def gateway(store_path: Path) -> Iterator[Gateway]:
    gw = Gateway(FakeStore(store_path), ListSink(), b"t" * 32)  # type: ignore[arg-type]
    yield gw
    gw.close()


async def test_tools_are_listed_read_only_with_schemas(gateway: Gateway) -> None:
    async with Client(build_server(gateway, transport="in-memory", principal=principal("user/*.rs"))) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    for name in ANALYTICS_TOOL_NAMES:
        tool = tools[name]
        assert tool.output_schema is not None and tool.input_schema["type"] == "object"
        ann = tool.annotations
        assert ann is not None and ann.read_only_hint is True and ann.destructive_hint is False
    desc = tools["query_sql"].description or ""
    assert "noshow" in desc and "start_time >= '2025-03-03'" in desc and "SELECT" in desc
    assert "One row per condition coding" in (tools["list_views"].description or "")
    props = tools["query_sql"].input_schema["properties"]
    assert props["max_rows"]["maximum"] == 200 and "sql" in tools["query_sql"].input_schema["required"]


async def test_calls_return_structured_content_matching_the_schema(gateway: Gateway) -> None:
    p1 = principal("launch/patient patient/*.rs", patient="p1")
    calls: list[tuple[str, dict[str, Any]]] = [
        ("list_views", {}),
        ("describe_view", {"view": "appointment"}),
        ("query_sql", {"sql": "SELECT status, count(*) AS n FROM appointment GROUP BY status ORDER BY status"}),
    ]
    async with Client(build_server(gateway, transport="in-memory", principal=p1)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        for name, args in calls:
            result = await client.call_tool(name, args)
            assert not result.is_error, result.content
            assert result.structured_content is not None
            jsonschema.validate(result.structured_content, tools[name].output_schema)
            assert json.loads(result.content[0].text) == result.structured_content  # type: ignore[union-attr]
        result = await client.call_tool("query_sql", calls[2][1])
    assert result.structured_content is not None
    assert result.structured_content["rows"] == [["fulfilled", 7], ["noshow", 3]]
    assert result.structured_content["confined_to_patient"] == "p1"


async def test_errors_are_tool_errors_without_echoed_values(gateway: Gateway) -> None:
    async with Client(build_server(gateway, transport="in-memory", principal=principal("user/*.rs"))) as client:
        for sql in (
            'SELECT * FROM appointment WHERE status = "Smith"',
            "SELECT * FROM resources",
            "SELECT 1; SELECT 2",
        ):
            result = await client.call_tool("query_sql", {"sql": sql})
            assert result.is_error
            text = result.content[0].text  # type: ignore[union-attr]
            assert "Smith" not in text and "Traceback" not in text
            assert "allowed" in text or "Views you may query" in text or "only" in text
        result = await client.call_tool("describe_view", {"view": "nope"})
        assert result.is_error and "appointment" in result.content[0].text  # type: ignore[union-attr]
