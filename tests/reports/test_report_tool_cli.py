"""The run_report MCP tool (in-memory client) and the `fhirgate report` command, end to end."""

from __future__ import annotations

import json
from collections.abc import Iterator

import jsonschema
import pytest
from report_oracle import DEMO_TODAY as TODAY
from report_policy import unthrottled_policy

from fhirgate.analytics.reports.registry import report_names
from fhirgate.app import build_gateway
from fhirgate.cli.main import main
from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.scopes import ScopeSet
from fhirgate.demo.generator import DemoSummary
from fhirgate.location import Location
from fhirgate.mcp.server import build_server
from fhirgate.service.gateway import Gateway
from mcp import Client

USER = Principal(sub="tester", issuer="urn:test", scopes=ScopeSet.parse("user/*.rs"), client_id="tests")
NO_APPOINTMENTS = Principal(sub="t2", issuer="urn:test", scopes=ScopeSet.parse("user/Patient.rs"), client_id="tests")


@pytest.fixture(scope="module")
def gw(demo_dir: tuple[Location, DemoSummary]) -> Iterator[Gateway]:
    g = build_gateway(demo_dir[0], key=None, policy=unthrottled_policy())
    yield g
    g.close()


async def test_run_report_tool_contract_and_results(gw: Gateway) -> None:
    async with Client(build_server(gw, transport="in-memory", principal=USER)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        tool = tools["run_report"]
        assert tool.annotations is not None and tool.annotations.read_only_hint is True
        for name in report_names():
            assert name in (tool.description or "")
            result = await client.call_tool("run_report", {"name": name, "params": {"today": TODAY.isoformat()}})
            assert not result.is_error, (name, result.content)
            data = result.structured_content
            assert data is not None
            jsonschema.validate(data, tool.output_schema)
            assert json.loads(result.content[0].text) == data
            assert data["headline"].endswith(".") and data["definition"]["time_zone"]


async def test_run_report_tool_errors_name_what_is_allowed(gw: Gateway) -> None:
    async with Client(build_server(gw, transport="in-memory", principal=USER)) as client:
        bad = await client.call_tool("run_report", {"name": "revenue_magic"})
        assert bad.is_error and "no_show_summary" in bad.content[0].text
        period = await client.call_tool("run_report", {"name": "cancellations", "params": {"period": "someday"}})
        assert period.is_error and "last_week" in period.content[0].text
    async with Client(build_server(gw, transport="in-memory", principal=NO_APPOINTMENTS)) as client:
        denied = await client.call_tool("run_report", {"name": "no_show_summary"})
        assert denied.is_error and "user/Appointment.rs" in denied.content[0].text


def test_cli_report_json_table_list_and_errors(
    demo_dir: tuple[Location, DemoSummary], capsys: pytest.CaptureFixture[str]
) -> None:
    data = demo_dir[0].name
    today = f"today={TODAY.isoformat()}"
    assert (
        main(
            [
                "report",
                "no_show_summary",
                "--data",
                data,
                "--param",
                today,
                "-p",
                "period=last_month",
                "--format",
                "json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["report"] == "no_show_summary" and out["params"]["start"] == "2026-10-01"
    assert main(["report", "patients_not_seen", "--data", data, "-p", today, "-p", "limit=3"]) == 0
    text = capsys.readouterr().out
    assert "have had no fulfilled visit" in text and "Definition:" in text and "--param offset=3" in text
    assert main(["report", "--list"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in report_names())
    assert main(["report", "nope", "--data", data]) == 1
    assert "patients_not_seen" in capsys.readouterr().err
    assert main(["report", "no_show_summary", "--data", data, "-p", "start=2025-02-30", "-p", "end=2025-03-30"]) == 1
    assert "YYYY-MM-DD" in capsys.readouterr().err
    assert main(["report", "no_show_summary", "--data", data, "-p", "period"]) == 1
    assert "KEY=VALUE" in capsys.readouterr().err
