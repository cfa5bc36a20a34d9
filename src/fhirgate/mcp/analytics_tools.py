"""The SQL analytics tools: list_views, describe_view and query_sql over the practice views.

Same contract as fhirgate.mcp.tools: public names, read-only annotations (MCP "Tool annotations"),
structuredContent conforming to the outputSchema plus the same JSON as text, and failures as tool
results with isError=true naming what is allowed (MCP "Error handling").
"""

# ruff: noqa: S608 - the SQL here is example text in a tool description, never executed.

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult
from pydantic import BaseModel, Field

from fhirgate.analytics.sql.catalog import ViewInfo, builtin_views
from fhirgate.analytics.sql.limits import SqlLimits
from fhirgate.mcp.audit_hook import current_request
from fhirgate.mcp.tools import READ_ONLY, _call
from fhirgate.service.gateway import Gateway

ANALYTICS_TOOL_NAMES = ("list_views", "describe_view", "query_sql")
_LIMITS = SqlLimits()


# -- output models (outputSchema) ------------------------------------------------------------------


class OmittedColumns(BaseModel):
    names: list[str]
    note: str


class ViewSummary(BaseModel):
    name: str = Field(description="The view's name: use it as the table name in SQL.")
    title: str
    grain: str = Field(description="What one row is, e.g. 'One row per condition coding'.")
    resource_type: str = Field(description="The FHIR resource type the rows come from.")
    column_names: list[str]
    available: bool = Field(description="True when you may query this view.")
    access: str = Field(description="Which rows you see, or why the view is not available to you.")
    required_scope: str | None = Field(description="The SMART scope that would make an unavailable view available.")
    omitted_columns: OmittedColumns | None = Field(
        default=None, description="Columns your role does not receive (minimum necessary)."
    )


class ListViewsOutput(BaseModel):
    views: list[ViewSummary]
    dialect: str
    dates: str = Field(description="How dates are stored and compared.")
    examples: list[str] = Field(description="Example queries.")
    limits: dict[str, int]


class ViewColumnOut(BaseModel):
    name: str
    type: str = Field(description="SQLite type: TEXT, INTEGER, REAL (ANY when untyped).")
    fhir_type: str | None = Field(description="The FHIR type of the value (id, code, dateTime, decimal...).")
    description: str


class Restriction(BaseModel):
    kind: str = Field(
        description="'none' (all rows), 'patient' (one patient's rows), 'governed' (rows left out by consent, "
        "care-team or label rules: see detail) or 'unavailable'."
    )
    detail: str
    patient: str | None = Field(description="The patient id your rows are confined to, or null.")


class DescribeViewOutput(ViewSummary):
    columns: list[ViewColumnOut]
    restriction: Restriction = Field(description="The row-level restriction in effect for you.")
    dates: str


class SqlColumn(BaseModel):
    name: str
    type: str | None = Field(description="Declared type of a view column, null for computed values.")


class SqlPage(BaseModel):
    offset: int = Field(description="Rows skipped before this page.")
    returned: int
    next_cursor: str | None = Field(
        description="Pass as `cursor` with the SAME sql and max_rows to get the next page; null when done."
    )
    note: str | None = None


class Withheld(BaseModel):
    patients_excluded: int | str = Field(
        description="Patients left out by consent or opt-out: a number from 11 up, 0, or 'fewer than 11'."
    )
    labels: list[str] = Field(description="Security label codes whose resources are withheld from you.")
    note: str = Field(description="What was withheld and why, to tell the user; never guess the withheld values.")


class Deidentified(BaseModel):
    suppressed_cells: int = Field(description="Computed counts of 1-10 shown as '<11' in this page.")
    note: str


class QuerySqlOutput(BaseModel):
    columns: list[SqlColumn]
    rows: list[list[Any]] = Field(description="Result rows, each a list of values in column order.")
    views: list[str] = Field(description="The views the query read.")
    confined_to_patient: str | None = Field(description="When your access is confined to one patient: that id.")
    page: SqlPage
    withheld: Withheld | None = Field(
        default=None, description="Present when consent, care-team or label rules left rows out of the result."
    )
    deidentified: Deidentified | None = Field(
        default=None, description="Present when your role receives de-identified data (Safe Harbor)."
    )


# -- descriptions ----------------------------------------------------------------------------------

_SHOWN_TYPES = {"instant", "dateTime", "date", "decimal", "integer", "positiveInt", "unsignedInt", "boolean"}


def _view_line(info: ViewInfo) -> str:
    cols = ", ".join(f"{c.name} ({c.fhir_type})" if c.fhir_type in _SHOWN_TYPES else c.name for c in info.columns)
    return f"- {info.name} ({info.resource_type}): {info.grain} Columns: {cols}."


def _views_text() -> str:
    return "\n".join(_view_line(v) for v in builtin_views().values())


def descriptions() -> dict[str, str]:
    """The three tool descriptions (built from the shipped view definitions)."""
    limits = _LIMITS
    return {
        "list_views": (
            "Lists the practice views you can query with query_sql: name, grain (what one row is), FHIR resource "
            "type, column names, whether you may query it and which rows you see (all, or one patient's), and why "
            "not when unavailable (with the scope needed). Also returns the date rules, example queries and limits. "
            "Takes no arguments. Views:\n" + _views_text()
        ),
        "describe_view": (
            "Describes one view: every column with its SQLite type, FHIR type and meaning, the grain, and the "
            "row-level restriction in effect for you (e.g. only rows of your patient). Call before writing SQL "
            "against a view you have not used. Unknown names are errors that list the views."
        ),
        "query_sql": (
            "Runs ONE read-only SQLite SELECT (WITH, JOIN, GROUP BY, window and JSON functions allowed) over the "
            "practice views and returns columns and rows. Use it for counts and reports across many patients "
            "(no-shows, diagnoses, lab trends, billing); use search_resources/read_resource for individual FHIR "
            "records. Only the views are tables (see list_views); each view is already limited to the rows your "
            "scopes allow. No PRAGMA, ATTACH, writes or parameters: write values inline as 'text' literals "
            "(single quotes; double quotes are identifiers). Dates are FHIR text with the record's UTC offset, e.g. "
            "start_time '2025-03-04T09:30:00-05:00': filter a local-date range by prefix "
            "(start_time >= '2025-03-03' AND start_time < '2025-03-10', uses indexes); julianday()/unixepoch() "
            "compare instants in UTC. Codes: condition.system is a code system URI "
            "(http://hl7.org/fhir/sid/icd-10-cm, http://snomed.info/sct), observation.code a LOINC code. "
            "Example, no-shows by practitioner last week: SELECT p.family, p.given, count(*) AS no_shows FROM "
            "appointment a JOIN practitioner p ON p.id = a.practitioner_id WHERE a.status = 'noshow' AND "
            "a.start_time >= '2025-03-03' AND a.start_time < '2025-03-10' GROUP BY p.id ORDER BY no_shows DESC. "
            f"Limits: {limits.time_limit_ms} ms per query, up to max_rows (<= {limits.max_rows}) rows per page; "
            "for more, call again with the same sql and max_rows plus cursor=page.next_cursor (add ORDER BY for "
            f"stable pages; paging stops after {limits.max_offset + limits.max_rows} rows, so aggregate instead); "
            f"values longer than {limits.max_cell_chars} characters are errors (use substr). Errors name the "
            "problem and its character position and list what is allowed."
        ),
    }


TITLES = {
    "list_views": "List SQL views",
    "describe_view": "Describe a SQL view",
    "query_sql": "Query the practice views with SQL",
}


def register_analytics_tools(server: MCPServer[Any], gateway: Gateway) -> None:
    """Add list_views, describe_view and query_sql to `server`, bound to `gateway`."""

    async def list_views() -> Annotated[CallToolResult, ListViewsOutput]:
        ctx = current_request()
        return await _call(lambda: gateway.list_views(ctx))

    async def describe_view(
        view: Annotated[str, Field(description="A view name from list_views, e.g. 'appointment'.", max_length=64)],
    ) -> Annotated[CallToolResult, DescribeViewOutput]:
        ctx = current_request()
        return await _call(lambda: gateway.describe_view(ctx, view))

    async def query_sql(
        sql: Annotated[
            str,
            Field(
                description="One SQLite SELECT over the views, values inline as literals.",
                max_length=_LIMITS.max_sql_chars,
            ),
        ],
        max_rows: Annotated[
            int,
            Field(
                description=f"Rows per page, 1-{_LIMITS.max_rows}.",
                json_schema_extra={"minimum": 1, "maximum": _LIMITS.max_rows},
            ),
        ] = _LIMITS.default_rows,
        cursor: Annotated[
            str | None,
            Field(description="next_cursor from the previous page; resend the same sql and max_rows. Omit first."),
        ] = None,
    ) -> Annotated[CallToolResult, QuerySqlOutput]:
        ctx = current_request()
        return await _call(lambda: gateway.query_sql(ctx, sql, max_rows=max_rows, cursor=cursor))

    text = descriptions()
    for fn in (list_views, describe_view, query_sql):
        server.add_tool(
            fn,
            name=fn.__name__,
            title=TITLES[fn.__name__],
            description=text[fn.__name__],
            annotations=READ_ONLY,
            structured_output=True,
        )
