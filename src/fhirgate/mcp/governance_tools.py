"""Governance tools: break_glass (emergency access, audited) and audit_disclosures (164.528 accounting).

Same contract as fhirgate.mcp.tools (structuredContent conforming to the outputSchema, failures as isError
results). Which roles may call them is the policy file's decision (docs/policy.md): break_glass only for roles
with `break_glass = true`, audit_disclosures for the compliance role by default.
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, Field

from fhirgate.mcp.audit_hook import current_request
from fhirgate.mcp.tools import READ_ONLY, PatientId, _call
from fhirgate.service.gateway import Gateway

GOVERNANCE_TOOL_NAMES = ("break_glass", "audit_disclosures")
# break_glass changes what later calls may see: not read-only, not idempotent in effect (it restarts the clock).
ELEVATES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)


class BreakGlassOpens(BaseModel):
    care_team: bool = Field(description="True when patients outside your care team become visible.")
    sensitive_labels: list[str] = Field(description="Security label codes that become visible.")


class BreakGlassOutput(BaseModel):
    break_glass: bool
    role: str
    expires: str = Field(description="UTC instant when emergency access ends.")
    opens: BreakGlassOpens
    still_applies: str
    note: str


class Recipient(BaseModel):
    client_id: str | None = Field(description="The MCP client (application) that received the data.")
    user: str | None = Field(description="The user it acted for (fhirUser, else subject).")
    sub: str | None


class Disclosure(BaseModel):
    seq: int = Field(description="The audit record's sequence number (fhirgate audit verify proves it intact).")
    date: str
    request_id: str
    recipient: Recipient
    description: str
    resource_types: list[str]
    purpose: str
    purpose_of_use: list[str]
    exempt: bool
    exempt_reason: str | None = Field(
        description="treatment, payment, operations or to the individual when exempt from 164.528, else null."
    )


class DisclosuresOutput(BaseModel):
    patient: str
    since: str
    until: str
    count: int
    not_exempt: int
    disclosures: list[Disclosure]
    note: str


def register_governance_tools(server: MCPServer[Any], gateway: Gateway) -> None:
    """Add break_glass and audit_disclosures to `server`, bound to `gateway`."""

    async def break_glass(
        reason: Annotated[
            str,
            Field(
                description="Why emergency access is needed now (at least 10 characters); recorded in the audit log.",
                max_length=500,
            ),
        ],
    ) -> Annotated[CallToolResult, BreakGlassOutput]:
        ctx = current_request()
        return await _call(lambda: gateway.break_glass(ctx, reason))

    async def audit_disclosures(
        patient_id: PatientId,
        since: Annotated[str | None, Field(description="First day, YYYY-MM-DD (default: six years ago).")] = None,
        until: Annotated[str | None, Field(description="Last day, YYYY-MM-DD (default: today).")] = None,
    ) -> Annotated[CallToolResult, DisclosuresOutput]:
        ctx = current_request()
        return await _call(lambda: gateway.audit_disclosures(ctx, patient_id, since=since, until=until))

    server.add_tool(
        break_glass,
        name="break_glass",
        title="Break the glass (emergency access)",
        description=(
            "Opens emergency access for your role's bounded time (the policy's break_glass_minutes): patients "
            "outside your care team and the sensitive labels your role may see in an emergency. Use ONLY when the "
            "user states a clinical emergency and the data was withheld (category care-team or sensitivity); "
            "pass their stated reason. Consent (opt-outs and deny provisions) still applies. Every call and every "
            "request until it expires is flagged for privacy review. Roles without break-glass get an error."
        ),
        annotations=ELEVATES,
        structured_output=True,
    )
    server.add_tool(
        audit_disclosures,
        name="audit_disclosures",
        title="Accounting of disclosures (HIPAA 164.528)",
        description=(
            "For compliance officers: every access to one patient's data by AI clients in a window (default: "
            "the last six years), with date, recipient (client and user), a description of the data, the purpose "
            "and whether it is exempt from the 164.528 accounting (treatment, payment, operations, to the "
            "individual). Ids only, no clinical values."
        ),
        annotations=READ_ONLY,
        structured_output=True,
    )
