"""The write tools: propose a change, then ask the user to confirm it in the chat when the client can.

Thin adapters over the Gateway's write use cases. A low-risk pending proposal is confirmed through MCP
elicitation: on 2026-07-28 the tool returns an InputRequiredResult (a form with one `confirm` boolean)
whose `requestState` carries the proposal id, a single-use confirmation token and a digest of the
arguments; the client retries the same call with the user's answer (MCP 2026-07-28 multi-round-trip
requests). The SDK seals `requestState` (AES-GCM, bound to the principal) and the token's own HMAC binds
proposal, content and principal, so a forged, altered or replayed confirmation is refused. On 2025-11-25
the tool asks mid-call (`elicitation/create`). Clients without elicitation, and high-risk proposals, get
the pending proposal and `proposal_status` (a person approves with `fhirgate approvals`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Annotated, Any, Literal

import anyio.to_thread
import orjson
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import (
    CallToolResult,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    InputRequiredResult,
    ToolAnnotations,
)
from mcp_types.version import is_version_at_least
from pydantic import BaseModel, Field

from fhirgate.audit.record import digest_arguments
from fhirgate.core.policy.rules import WRITE_TOOLS
from fhirgate.errors import FhirgateError, InvalidInput
from fhirgate.mcp.audit_hook import current_request
from fhirgate.mcp.outputs import WriteOutput
from fhirgate.mcp.tools import PatientId, _call, _error, _ok
from fhirgate.service.context import RequestContext
from fhirgate.service.gateway import Gateway

log = logging.getLogger(__name__)

WRITE_TOOL_NAMES = tuple(sorted(WRITE_TOOLS))
CONFIRM_KEY = "confirm"
_STATE_VERSION = 1
# Proposes a change (nothing is written until a person confirms or approves it): not read-only, not
# destructive by itself, idempotent with an idempotency key.
PROPOSES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
STATUS = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
_CONFIRM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "confirm": {
            "type": "boolean",
            "title": "Make this change",
            "description": "Yes writes exactly the change shown; no withdraws it.",
        }
    },
    "required": ["confirm"],
}

IdempotencyKey = Annotated[
    str | None,
    Field(
        description="Any unique text for this request (e.g. a UUID). Retrying with the same key and the same "
        "arguments returns the same proposal instead of making a second one.",
        max_length=200,
    ),
]
Start = Annotated[
    str, Field(description="Start with its UTC offset, ISO 8601: 2026-11-23T10:00:00-05:00.", max_length=40)
]


class Confirm(BaseModel):
    """The in-chat confirmation form (2025-11-25 elicitation)."""

    confirm: bool = Field(title="Make this change", description="Yes writes exactly the change shown; no withdraws it.")


def _message(result: dict[str, Any]) -> str:
    """What the user is asked: the summary and the field-level diff (shown to them, never logged)."""
    proposal = result["proposal"]
    return (
        f"{result.get('summary') or 'Proposed change'}\n\nChanges:\n{result.get('diff') or '(none)'}\n\n"
        f"Risk: {proposal['risk']} ({', '.join(proposal['risk_reasons'])}). Proposal {proposal['id']}."
    )


def _elicitation(ctx: Context[Any, Any]) -> Literal["input-required", "inline"] | None:
    """How this client can be asked: 2026-07-28 InputRequiredResult, 2025 mid-call request, or not at all."""
    caps = ctx.client_capabilities
    eliciting = caps.elicitation if caps is not None else None
    # MCP 2025-11-25 "Elicitation": an empty elicitation capability means form mode.
    if eliciting is None or (eliciting.form is None and eliciting.url is not None):
        return None
    version = ctx.protocol_version
    if version is not None and is_version_at_least(version, "2026-07-28"):
        return "input-required"
    return "inline"


class WriteFlow:
    """Propose, then confirm: the elicitation rounds of one write tool call."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def run(
        self, ctx: Context[Any, Any], tool: str, arguments: dict[str, Any], propose: Callable[[RequestContext], Any]
    ) -> CallToolResult | InputRequiredResult:
        rctx = current_request()
        if ctx.request_state is not None:
            return await self._resume(ctx, rctx, tool, arguments)
        try:
            result: dict[str, Any] = await anyio.to_thread.run_sync(lambda: propose(rctx))
        except FhirgateError as exc:
            return _error(exc)
        proposal = result["proposal"]
        if proposal["status"] != "pending" or proposal["risk"] != "low":
            return _ok(result)
        mode = _elicitation(ctx)
        if mode is None:
            result["confirmation"] = "not asked: this client cannot show a confirmation (MCP elicitation), so the "
            result["confirmation"] += "proposal waits for a person's approval."
            return _ok(result)
        try:
            token = await anyio.to_thread.run_sync(
                lambda: self.gateway.confirmation_token(rctx.principal, proposal["id"])
            )
        except FhirgateError as exc:
            return _error(exc)
        if token is None:
            return _ok(result)
        if mode == "input-required":
            state = {"v": _STATE_VERSION, "tool": tool, "proposal": proposal["id"], "token": token}
            state["args"] = digest_arguments(arguments)
            request = ElicitRequest(
                params=ElicitRequestFormParams(message=_message(result), requested_schema=_CONFIRM_SCHEMA)
            )
            return InputRequiredResult(
                input_requests={CONFIRM_KEY: request}, request_state=orjson.dumps(state).decode()
            )
        return await self._ask_inline(ctx, rctx, tool, result, token)

    async def _ask_inline(
        self, ctx: Context[Any, Any], rctx: RequestContext, tool: str, result: dict[str, Any], token: str
    ) -> CallToolResult:
        """2025-11-25: ask with elicitation/create during the call; the answer is its own audited request."""
        pid = result["proposal"]["id"]
        try:
            answer = await ctx.elicit(_message(result), Confirm)
        except Exception as exc:  # the transport cannot reach the client (e.g. stateless JSON responses)
            log.info("elicitation for proposal %s not possible: %s", pid, type(exc).__name__)
            result["confirmation"] = "not asked: the confirmation could not be shown; the proposal waits for approval."
            return _ok(result)
        child = replace(rctx, request_id=f"{rctx.request_id}.confirm", audited=False)
        confirmed = answer.action == "accept" and bool(getattr(answer.data, "confirm", False))
        return await self._answer(child, tool, pid, token, answer.action, confirmed)

    async def _resume(
        self, ctx: Context[Any, Any], rctx: RequestContext, tool: str, arguments: dict[str, Any]
    ) -> CallToolResult:
        """2026-07-28 retry: check the echoed state against this call, then act on the user's answer."""
        try:
            state = orjson.loads(ctx.request_state or "")
            if not isinstance(state, dict) or state.get("v") != _STATE_VERSION:
                raise ValueError("unknown state")
            pid, token = str(state["proposal"]), str(state["token"])
        except (ValueError, KeyError, TypeError):
            return _error(InvalidInput("requestState", "is not a confirmation this server asked for"))
        if state.get("tool") != tool or state.get("args") != digest_arguments(arguments):
            return _error(InvalidInput("arguments", "changed since the confirmation was asked; call the tool again"))
        answer = (ctx.input_responses or {}).get(CONFIRM_KEY)
        if not isinstance(answer, ElicitResult):
            return _error(InvalidInput("inputResponses", f"the answer to {CONFIRM_KEY!r} is missing"))
        confirmed = answer.action == "accept" and (answer.content or {}).get("confirm") is True
        return await self._answer(rctx, tool, pid, token, answer.action, confirmed)

    async def _answer(
        self, rctx: RequestContext, tool: str, pid: str, token: str, action: str, confirmed: bool
    ) -> CallToolResult:
        gateway = self.gateway
        if confirmed:
            return await _call(lambda: gateway.confirm_proposal(rctx, tool, pid, token))
        if action == "cancel":  # dismissed without a choice: the proposal stays pending for approval
            return await _call(lambda: gateway.proposal_status(rctx, pid))
        return await _call(lambda: gateway.decline_proposal(rctx, tool, pid, "declined in chat"))


def register_write_tools(server: MCPServer[Any], gateway: Gateway) -> None:
    """Add the write tools; tools/list shows them only to roles the policy lets write (when writes are on)."""
    flow = WriteFlow(gateway)

    async def book_appointment(
        ctx: Context[Any, Any],
        patient_id: PatientId,
        practitioner_id: Annotated[str, Field(description="The Practitioner's FHIR id.", max_length=64)],
        start: Start,
        minutes: Annotated[int, Field(description="Length in minutes (5-480).", ge=5, le=480)] = 30,
        service_type: Annotated[
            str | None, Field(description="Kind of visit, e.g. 'follow-up'.", max_length=200)
        ] = None,
        reason: Annotated[
            str | None,
            Field(
                description="Reason for the visit, in words. Clinical (Appointment.reasonCode): it makes the "
                "proposal high risk, so another person must approve it; leave it out for a plain booking.",
                max_length=500,
            ),
        ] = None,
        location_id: Annotated[str | None, Field(description="Location's FHIR id.", max_length=64)] = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Annotated[CallToolResult, WriteOutput] | InputRequiredResult:
        args = {
            "patient_id": patient_id,
            "practitioner_id": practitioner_id,
            "start": start,
            "minutes": minutes,
            "service_type": service_type,
            "reason": reason,
            "location_id": location_id,
        }
        return await flow.run(
            ctx,
            "book_appointment",
            {**args, "idempotency_key": idempotency_key},
            lambda r: gateway.book_appointment(r, idempotency_key=idempotency_key, **args),
        )

    async def update_appointment(
        ctx: Context[Any, Any],
        appointment_id: Annotated[str, Field(description="The Appointment's FHIR id.", max_length=64)],
        action: Annotated[
            Literal["reschedule", "cancel", "arrived", "checked-in", "noshow"],
            Field(description="reschedule (needs start), cancel (needs reason), arrived, checked-in or noshow."),
        ],
        start: Annotated[str | None, Field(description="New start for reschedule, with UTC offset.")] = None,
        minutes: Annotated[int | None, Field(description="New length for reschedule.", ge=5, le=480)] = None,
        reason: Annotated[
            str | None, Field(description="Why it is cancelled (required for cancel).", max_length=500)
        ] = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Annotated[CallToolResult, WriteOutput] | InputRequiredResult:
        args = {
            "appointment_id": appointment_id,
            "action": action,
            "start": start,
            "minutes": minutes,
            "reason": reason,
        }
        return await flow.run(
            ctx,
            "update_appointment",
            {**args, "idempotency_key": idempotency_key},
            lambda r: gateway.update_appointment(r, idempotency_key=idempotency_key, **args),
        )

    async def add_clinical_note(
        ctx: Context[Any, Any],
        patient_id: PatientId,
        text: Annotated[str, Field(description="The note text (plain text).", max_length=20000)],
        title: Annotated[str | None, Field(description="Short title.", max_length=200)] = None,
        note_type: Annotated[
            Literal["progress", "consult", "discharge", "history", "telephone", "other"],
            Field(description="Kind of note (LOINC document type)."),
        ] = "progress",
        encounter_id: Annotated[str | None, Field(description="The Encounter it belongs to.", max_length=64)] = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Annotated[CallToolResult, WriteOutput] | InputRequiredResult:
        args = {
            "patient_id": patient_id,
            "text": text,
            "title": title,
            "note_type": note_type,
            "encounter_id": encounter_id,
        }
        return await flow.run(
            ctx,
            "add_clinical_note",
            {**args, "idempotency_key": idempotency_key},
            lambda r: gateway.add_clinical_note(r, idempotency_key=idempotency_key, **args),
        )

    async def create_resource(
        ctx: Context[Any, Any],
        resource: Annotated[
            dict[str, Any], Field(description="The FHIR R4 resource (JSON); the server assigns the id.")
        ],
        idempotency_key: IdempotencyKey = None,
    ) -> Annotated[CallToolResult, WriteOutput] | InputRequiredResult:
        return await flow.run(
            ctx,
            "create_resource",
            {"resource": resource, "idempotency_key": idempotency_key},
            lambda r: gateway.create_resource(r, resource, idempotency_key=idempotency_key),
        )

    async def update_resource(
        ctx: Context[Any, Any],
        resource: Annotated[
            dict[str, Any],
            Field(description="The whole new version (FHIR JSON) with id and the meta.versionId you read."),
        ],
        idempotency_key: IdempotencyKey = None,
    ) -> Annotated[CallToolResult, WriteOutput] | InputRequiredResult:
        return await flow.run(
            ctx,
            "update_resource",
            {"resource": resource, "idempotency_key": idempotency_key},
            lambda r: gateway.update_resource(r, resource, idempotency_key=idempotency_key),
        )

    async def proposal_status(
        proposal_id: Annotated[str, Field(description="The proposal id (prop-…).", max_length=64)],
    ) -> Annotated[CallToolResult, WriteOutput]:
        rctx = current_request()
        return await _call(lambda: gateway.proposal_status(rctx, proposal_id))

    footer = (
        " Nothing is written by this call: it returns a proposal with a readable diff and its risk. A low-risk "
        "proposal is confirmed by the user in the chat when the client can ask; otherwise (or when high risk) a "
        "person approves it with `fhirgate approvals`, and proposal_status tells you where it stands."
    )
    server.add_tool(
        book_appointment,
        name="book_appointment",
        title="Book an appointment (proposal)",
        description="Books a patient with a practitioner at a time: needs free Slots in the practitioner's "
        "Schedule (when they keep one) and no overlapping appointment for either." + footer,
        annotations=PROPOSES,
        structured_output=True,
    )
    server.add_tool(
        update_appointment,
        name="update_appointment",
        title="Reschedule, cancel or mark an appointment (proposal)",
        description="Changes one appointment: reschedule to a new start, cancel with a reason, mark arrived, "
        "checked-in or no-show. Slots are freed or taken to match." + footer,
        annotations=PROPOSES,
        structured_output=True,
    )
    server.add_tool(
        add_clinical_note,
        name="add_clinical_note",
        title="Draft a clinical note (proposal)",
        description="Adds a note for a patient as a DRAFT DocumentReference (docStatus preliminary) that the "
        "clinician finalises in their EHR; you are recorded as author when you are a practitioner." + footer,
        annotations=PROPOSES,
        structured_output=True,
    )
    server.add_tool(
        create_resource,
        name="create_resource",
        title="Create a resource (proposal)",
        description="Creates a FHIR R4 resource of a type your role may write (whoami shows it). Validated "
        "(R4 structure, codes, references must exist). Clinical data is high risk and needs another person's "
        "approval." + footer,
        annotations=PROPOSES,
        structured_output=True,
    )
    server.add_tool(
        update_resource,
        name="update_resource",
        title="Update a resource (proposal)",
        description="Replaces a resource with a new version. Send the WHOLE resource as you read it (format "
        "'fhir') with your changes and its meta.versionId; a stale version is refused (read again). Elements your "
        "role does not receive are kept as stored." + footer,
        annotations=PROPOSES,
        structured_output=True,
    )
    server.add_tool(
        proposal_status,
        name="proposal_status",
        title="Where a proposed write stands",
        description="Status of one of your proposals: pending, approved, rejected, expired, applied (with the "
        "version written) or failed (with why), and what happens next.",
        annotations=STATUS,
        structured_output=True,
    )
