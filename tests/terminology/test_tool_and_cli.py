"""lookup_code through the MCP in-memory client, and `fhirgate codes lookup` from the shell."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp.client import Client
from terminology_support import ICD, who

from fhirgate.cli.main import main
from fhirgate.config import DataDir
from fhirgate.mcp.server import build_server
from fhirgate.service.gateway import Gateway


async def _call(gateway: Gateway, args: dict[str, Any], role: str | None = None) -> Any:
    async with Client(build_server(gateway, transport="in-memory", principal=who(role=role))) as client:
        return await client.call_tool("lookup_code", args)


async def test_tool_is_listed_read_only_with_an_output_schema(demo_gateway: Gateway) -> None:
    async with Client(build_server(demo_gateway, transport="in-memory", principal=who())) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    tool = tools["lookup_code"]
    assert tool.annotations is not None and tool.annotations.read_only_hint is True
    assert tool.annotations.destructive_hint is False
    assert tool.output_schema is not None and "matches" in tool.output_schema["properties"]
    assert {"text", "code", "system", "limit"} <= set(tool.input_schema["properties"])
    assert "no-match" in (tool.description or "")


async def test_tool_words_and_codes(demo_gateway: Gateway) -> None:
    res = await _call(demo_gateway, {"text": "diabtes", "limit": 3})
    assert not res.is_error, res.content
    out = res.structured_content
    assert out["status"] == "match" and out["corrections"][0]["term"] == "diabtes"
    assert (out["matches"][0]["system"], out["matches"][0]["code"]) == (ICD, "E11")
    assert json.loads(res.content[0].text) == out
    res = await _call(demo_gateway, {"code": "E11.9"})
    out = res.structured_content
    assert out["matches"][0]["seen_in_data"] is True and out["hierarchy"]["ancestors"][0]["code"] == "E11"


async def test_tool_no_match_and_errors(demo_gateway: Gateway) -> None:
    res = await _call(demo_gateway, {"text": "xyzzyplugh"})
    assert not res.is_error and res.structured_content["status"] == "no-match"
    assert res.structured_content["matches"] == []
    both = await _call(demo_gateway, {"text": "asthma", "code": "J45"})
    assert both.is_error and both.content[0].text.startswith("invalid-input: text:")
    bad = await _call(demo_gateway, {"text": "asthma", "system": "icd9"})
    assert bad.is_error and "system: unknown code system" in bad.content[0].text


async def test_deidentified_analyst_may_look_up_codes(demo_gateway: Gateway) -> None:
    res = await _call(demo_gateway, {"text": "asthma"}, role="analyst")
    assert not res.is_error, res.content
    assert res.structured_content["matches"][0]["code"] == "J45"


def test_cli_lookup_table_json_and_exit_codes(demo_dir: DataDir, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(demo_dir.path)
    assert main(["codes", "lookup", "hypertenson", "--data", data, "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "read 'hypertenson' as: hypertension" in out and "I10" in out
    assert main(["codes", "lookup", "--code", "E11", "--data", data, "--format", "json"]) == 0
    parsed = json.loads(capsys.readouterr().out)
    assert parsed["hierarchy"]["descendants_total"] == 116
    assert main(["codes", "lookup", "zzqqxx", "--data", data]) == 1
    assert "no match" in capsys.readouterr().out
    assert main(["codes", "lookup", "--data", data]) == 1
    assert "text: give either text" in capsys.readouterr().err
    assert main(["codes", "lookup", "asthma", "--system", "icd9", "--data", data]) == 1
    assert "system: unknown code system" in capsys.readouterr().err


def test_cli_without_a_store_uses_offline_sources(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["codes", "lookup", "a1c", "--data", str(tmp_path / "none"), "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert "ICD-10-CM and curated synonyms only" in captured.err
    assert json.loads(captured.out)["matches"][0]["code"] == "4548-4"
    assert not (tmp_path / "none").exists()
