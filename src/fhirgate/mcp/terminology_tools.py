"""The lookup_code tool: offline clinical terminology (a clinician's words -> codes; a code -> its meaning).

Same contract as fhirgate.mcp.tools: read-only annotations (MCP "Tool annotations"), structuredContent
conforming to the outputSchema plus the same JSON as text, failures as isError results naming the parameter
and what is allowed (MCP "Error handling"). The lookup itself is fhirgate.terminology, via Gateway.lookup_code.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult
from pydantic import BaseModel, Field

from fhirgate.mcp.audit_hook import current_request
from fhirgate.mcp.tools import READ_ONLY, _call
from fhirgate.service.gateway import Gateway
from fhirgate.terminology.lookup import MAX_LIMIT, MAX_TEXT
from fhirgate.terminology.systems import SYSTEMS

TERMINOLOGY_TOOL_NAMES = ("lookup_code",)


class CodeCandidate(BaseModel):
    system: str = Field(description="Code system URI (use it as `system|code` in search_resources).")
    code: str
    display: str
    score: float = Field(description="0-1; 1 is an exact curated or code match. Ranks candidates, not certainty.")
    source: Literal["synonym", "icd10cm", "seen-in-data"] = Field(
        description="synonym: curated list; icd10cm: CMS ICD-10-CM tables; seen-in-data: a code in this practice's "
        "records (display as recorded)."
    )
    match: Literal["exact", "prefix", "corrected", "partial", "code"] = Field(
        description="corrected: a word was read as a close spelling (see corrections); partial: only in "
        "suggestions, shares only some of the words."
    )
    seen_in_data: bool = Field(description="True when records in this practice carry this code.")
    concept: str | None = Field(description="The curated concept it came from (synonym source).")


class Correction(BaseModel):
    term: str = Field(description="A word of the query that is not in any source.")
    read_as: list[str] = Field(description="The close spellings it was matched as.")


class IcdItem(BaseModel):
    code: str
    display: str
    kind: str | None = Field(default=None, description="category, subcategory, block or chapter.")


class BelowSearch(BaseModel):
    param: str
    value: str


class Hierarchy(BaseModel):
    ancestors: list[IcdItem] = Field(description="Nearest first: parent category, block, chapter.")
    descendants: list[IcdItem] = Field(description="Codes below it, in table order (bounded).")
    descendants_total: int
    descendants_omitted: int
    below_search: BelowSearch = Field(
        description="search_resources params entry matching this code and everything below it."
    )


class LookupOutput(BaseModel):
    mode: Literal["text", "code"]
    query: dict[str, Any]
    status: Literal["match", "no-match"] = Field(
        description="no-match: nothing here is a code for the query; say so, never invent one."
    )
    matches: list[CodeCandidate]
    total: int = Field(description="Candidates found in all (matches holds the best `limit`).")
    corrections: list[Correction]
    suggestions: list[CodeCandidate] = Field(
        description="Only with no-match: codes sharing SOME of the words. Not matches; confirm with the user."
    )
    hierarchy: Hierarchy | None = Field(description="ICD-10-CM code lookups: ancestors and descendants.")
    seen_in_data_types: list[str] = Field(description="Resource types whose codes in this practice were searched.")
    note: str


def register_terminology_tools(server: MCPServer[Any], gateway: Gateway) -> None:
    """Add lookup_code to `server`, bound to `gateway`."""

    async def lookup_code(
        text: Annotated[
            str | None,
            Field(
                description="Clinical words to find codes for: a lab, vital, condition, drug or vaccine, e.g. "
                "'HbA1c', 'high blood pressure', 'type 2 diabetes', 'metformin', 'flu shot'. Misspellings are "
                "tolerated. Give text OR code.",
                max_length=MAX_TEXT,
            ),
        ] = None,
        code: Annotated[
            str | None,
            Field(
                description="A code to explain, e.g. 'E11.9', '4548-4' or 'http://loinc.org|4548-4'. Give text OR "
                "code.",
                max_length=200,
            ),
        ] = None,
        system: Annotated[
            str | None,
            Field(
                description="Restrict to one code system: "
                + ", ".join(SYSTEMS)
                + ", or its URI ("
                + ", ".join(SYSTEMS.values())
                + ").",
                max_length=100,
            ),
        ] = None,
        limit: Annotated[
            int,
            Field(
                description=f"Most candidates to return, 1-{MAX_LIMIT}.",
                json_schema_extra={"minimum": 1, "maximum": MAX_LIMIT},
            ),
        ] = 10,
    ) -> Annotated[CallToolResult, LookupOutput]:
        ctx = current_request()
        return await _call(lambda: gateway.lookup_code(ctx, text=text, code=code, system=system, limit=limit))

    server.add_tool(
        lookup_code,
        name="lookup_code",
        title="Look up clinical codes (offline)",
        description=(
            "Turns a clinician's words into codes, or a code into its meaning, offline: ICD-10-CM (CMS tables, with "
            "hierarchy), a curated list of common labs, vitals, conditions, drugs and vaccines (LOINC, SNOMED CT, "
            "ICD-10-CM, RxNorm, CVX), and the codes used in this practice's own records (`seen_in_data`). Use it "
            "BEFORE search_resources or query_sql when the user names a condition, lab, drug or vaccine: search "
            "with the returned `system|code` values, preferring codes with seen_in_data=true (records carry "
            "product-level RxNorm codes, so search medications by those). For 'all diabetes' use an ICD-10-CM "
            "category with search_resources params {'code:below': 'http://hl7.org/fhir/sid/icd-10-cm|E11'} "
            "(`hierarchy.below_search`). status 'no-match' means no code is known for the words: tell the user; "
            "`suggestions` are NOT matches. Touches no patient data."
        ),
        annotations=READ_ONLY,
        structured_output=True,
    )
