"""The run_report tool: predefined practice reports (no-shows, patients not seen, care gaps...) by name.

Same contract as fhirgate.mcp.tools: read-only annotations (MCP "Tool annotations"), structuredContent
conforming to the outputSchema plus the same JSON as text, failures as isError results naming what is
allowed (MCP "Error handling"). The description lists every report with its parameters, built from the
registry so the model always sees what the server runs.
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult
from pydantic import BaseModel, Field

from fhirgate.analytics.reports.params import PERIODS
from fhirgate.analytics.reports.registry import MAX_LIMIT, ReportSpec, reports
from fhirgate.mcp.audit_hook import current_request
from fhirgate.mcp.tools import READ_ONLY, _call
from fhirgate.service.gateway import Gateway

REPORT_TOOL_NAMES = ("run_report",)
_NAME_DOC = "The report: " + ", ".join(reports()) + "."


class ReportPage(BaseModel):
    offset: int
    limit: int
    returned: int
    total_rows: int | None = Field(description="Rows the report has in all (the headline counts them all).")
    next_offset: int | None = Field(description="Pass as params.offset (same other params) for more; null when done.")


class Withheld(BaseModel):
    patients_excluded: int | str = Field(
        description="Patients left out by consent or opt-out: a number from 11 up, 0, or 'fewer than 11'."
    )
    labels: list[str] = Field(description="Security label codes whose resources are withheld from you.")
    note: str = Field(description="What was withheld and why, to tell the user; never guess the withheld values.")


class RunReportOutput(BaseModel):
    report: str
    title: str
    headline: str = Field(description="The key numbers in one sentence, safe to quote as is.")
    summary: dict[str, Any] = Field(description="The headline's numbers as values.")
    rows: list[dict[str, Any]] = Field(description="Compact result rows (bounded by limit).")
    definition: dict[str, Any] = Field(
        description="Exactly what was counted: period bounds (ISO dates, end exclusive), time-zone handling, "
        "statuses, denominators, sources. Quote it when asked how a number was computed."
    )
    params: dict[str, Any] = Field(description="The parameters the report ran with, defaults filled in.")
    page: ReportPage
    views: list[str] = Field(description="The practice views the report read.")
    confined_to_patient: str | None = Field(description="When your access is confined to one patient: that id.")
    elapsed_ms: float
    withheld: Withheld | None = Field(
        default=None, description="Present when consent, care-team or label rules left rows out of the report."
    )


def _param_text(spec: ReportSpec) -> str:
    own = []
    for p in spec.params:
        bound = f" {p.minimum}-{p.maximum}" if p.kind == "int" else ""
        choice = f" ({'|'.join(p.choices)})" if p.choices else ""
        default = f", default {p.default}" if p.default is not None else ""
        own.append(f"{p.name}{bound}{choice}{default}")
    if spec.takes_period:
        own.append("period/start/end")
    return "; ".join(own) if own else "common only"


def description() -> str:
    """The run_report description: what it does, the common params, and each report."""
    lines = [
        "Runs a predefined practice report and returns a one-sentence `headline` with the key numbers, compact "
        "`rows`, `summary` numbers and the exact `definition` used (period bounds, time zone, statuses, "
        "denominators, sources). Prefer it over query_sql for these questions; quote the headline and cite the "
        "definition. Reports see only the rows your scopes allow (a patient-scoped token sees one patient). "
        "Common params (all optional): today (YYYY-MM-DD, the date relative periods and windows count from; "
        f"default the server's date), limit (1-{MAX_LIMIT}, default 20), offset (for page.next_offset). Period "
        f"reports take period ({', '.join(PERIODS)}; default last_30_days) or start and end (YYYY-MM-DD, end "
        "exclusive, at most 366 days). Times are each appointment's local time in its own UTC offset. "
        "Reports (name: what; own params):"
    ]
    for spec in reports().values():
        lines.append(f"- {spec.name}: {spec.description} Params: {_param_text(spec)}.")
    return "\n".join(lines)


def register_report_tools(server: MCPServer[Any], gateway: Gateway) -> None:
    """Add run_report to `server`, bound to `gateway`."""

    async def run_report(
        name: Annotated[str, Field(description=_NAME_DOC, max_length=64)],
        params: Annotated[
            dict[str, Any] | None,
            Field(
                description='Report parameters, e.g. {"period": "last_month"} or {"start": "2025-03-01", '
                '"end": "2025-04-01", "today": "2025-04-15"}; omit for defaults.'
            ),
        ] = None,
    ) -> Annotated[CallToolResult, RunReportOutput]:
        ctx = current_request()
        return await _call(lambda: gateway.run_report(ctx, name, params))

    server.add_tool(
        run_report,
        name="run_report",
        title="Run a practice report",
        description=description(),
        annotations=READ_ONLY,
        structured_output=True,
    )
