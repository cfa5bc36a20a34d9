"""Write tools end to end over the MCP SDK's in-memory client: read-only by default, propose, confirm in the
chat through elicitation (2026-07-28 InputRequiredResult and 2025-11-25 mid-call), decline, replay and forgery."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from mcp.client.context import ClientRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import ElicitRequestParams, ElicitResult, InputRequiredResult
from writes_support import free_slot, practitioner_with_slots, reader, some_patient, staff, structured

from fhirgate.audit.log import AuditLog
from fhirgate.core.policy.rules import WRITE_TOOLS
from fhirgate.mcp.server import build_server
from fhirgate.service.gateway import Gateway
from mcp import Client


def _accept(answer: bool = True) -> Any:
    asked: list[str] = []

    async def callback(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"confirm": answer})

    callback.asked = asked  # type: ignore[attr-defined]
    return callback


async def _decline(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
    return ElicitResult(action="decline")


def _booking(gateway: Gateway, *, skip: int = 0, patient_skip: int = 0) -> dict[str, Any]:
    store = gateway.store
    doctor = practitioner_with_slots(store)
    slot = free_slot(store, doctor, skip=skip)
    return {
        "patient_id": some_patient(store, gateway, skip=patient_skip),
        "practitioner_id": doctor,
        "start": slot["start"],
        "minutes": 30,
        "service_type": "follow-up",
    }


def _audit(gateway: Gateway) -> list[Any]:
    log = gateway.audit_sink
    assert isinstance(log, AuditLog)
    return [e.record for e in log.iter()]


async def test_read_only_by_default_lists_no_write_tool(readonly_gateway: Gateway) -> None:
    server = build_server(readonly_gateway, transport="in-memory", principal=staff())
    async with Client(server) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert not names & WRITE_TOOLS
        result = await client.call_tool("book_appointment", _booking(readonly_gateway))
    assert result.is_error
    text = result.content[0].text
    assert "read-only" in text and "--allow-writes" in text
    assert readonly_gateway.writes.proposals.list() == []


async def test_writes_on_lists_the_write_tools(gateway: Gateway) -> None:
    async with Client(build_server(gateway, transport="in-memory", principal=staff())) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert names >= WRITE_TOOLS


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_low_risk_booking_confirmed_in_chat_is_written(gateway: Gateway, mode: str) -> None:
    args = _booking(gateway)
    callback = _accept()
    server = build_server(gateway, transport="in-memory", principal=staff())
    async with Client(server, mode=mode, elicitation_callback=callback) as client:
        result = await client.call_tool("book_appointment", args)
    assert not result.is_error, result.content[0].text
    out = structured(result)
    assert out["proposal"]["status"] == "applied"
    assert out["proposal"]["decided_by_you"] is True
    assert len(callback.asked) == 1 and "Book Patient/" in callback.asked[0]
    appt_ref = out["written"][0]["ref"]
    appt = gateway.store.read("Appointment", appt_ref.split("/")[1])
    assert appt is not None and appt.body["status"] == "booked"
    slot_id = appt.body["slot"][0]["reference"].split("/")[1]
    slot = gateway.store.read("Slot", slot_id)
    assert slot is not None and slot.body["status"] == "busy"
    records = _audit(gateway)
    proposed = [r for r in records if r.interaction == "write.propose"]
    confirmed = [r for r in records if r.interaction == "write.confirm"]
    assert len(proposed) == 1 and proposed[0].balp_kind == "operation" and proposed[0].outcome == "success"
    assert len(confirmed) == 1 and confirmed[0].balp_kind == "create" and confirmed[0].outcome == "success"
    assert confirmed[0].proposal == out["proposal"]["id"] == proposed[0].proposal
    assert confirmed[0].decider == staff().subject_key
    assert appt_ref in confirmed[0].references and args["patient_id"] in confirmed[0].patients


async def test_declined_in_chat_writes_nothing(gateway: Gateway) -> None:
    args = _booking(gateway)
    before = gateway.store.counts().get("Appointment", 0)
    async with Client(
        build_server(gateway, transport="in-memory", principal=staff()), elicitation_callback=_decline
    ) as client:
        result = await client.call_tool("book_appointment", args)
    out = structured(result)
    assert out["proposal"]["status"] == "rejected"
    assert gateway.store.counts().get("Appointment", 0) == before


async def test_client_without_elicitation_gets_a_pending_proposal(gateway: Gateway) -> None:
    args = _booking(gateway)
    async with Client(build_server(gateway, transport="in-memory", principal=staff())) as client:
        out = structured(await client.call_tool("book_appointment", args))
        assert out["proposal"]["status"] == "pending"
        assert "cannot show a confirmation" in out["confirmation"]
        assert "fhirgate approvals approve" in out["next_step"]
        status = structured(await client.call_tool("proposal_status", {"proposal_id": out["proposal"]["id"]}))
    assert status["proposal"]["status"] == "pending"


async def test_idempotency_key_returns_the_same_proposal(gateway: Gateway) -> None:
    args = {**_booking(gateway), "idempotency_key": "book-1"}
    async with Client(build_server(gateway, transport="in-memory", principal=staff())) as client:
        first = structured(await client.call_tool("book_appointment", args))
        again = structured(await client.call_tool("book_appointment", args))
        other = await client.call_tool("book_appointment", {**args, "minutes": 60})
    assert first["proposal"]["id"] == again["proposal"]["id"] and again["new"] is False
    assert other.is_error and "idempotency key already used" in other.content[0].text
    assert len(gateway.writes.proposals.list()) == 1


async def test_another_principal_cannot_see_a_proposal(gateway: Gateway) -> None:
    args = _booking(gateway)
    async with Client(build_server(gateway, transport="in-memory", principal=staff())) as client:
        pid = structured(await client.call_tool("book_appointment", args))["proposal"]["id"]
    async with Client(build_server(gateway, transport="in-memory", principal=staff("mallory"))) as client:
        result = await client.call_tool("proposal_status", {"proposal_id": pid})
    assert result.is_error and "not-found" in result.content[0].text


async def test_without_write_scope_the_proposal_is_refused_and_audited(gateway: Gateway) -> None:
    args = _booking(gateway)
    async with Client(build_server(gateway, transport="in-memory", principal=reader())) as client:
        result = await client.call_tool("book_appointment", args)
    assert result.is_error and "Appointment.c" in result.content[0].text
    assert gateway.writes.proposals.list() == []
    refused = [r for r in _audit(gateway) if r.interaction == "write.propose"]
    assert refused and refused[-1].outcome == "denied"


# -- the 2026-07-28 rounds driven by hand: replay, forgery, changed arguments ---------------------------


async def _first_round(client: Client, args: dict[str, Any]) -> InputRequiredResult:
    first = await client.session.call_tool("book_appointment", args, allow_input_required=True)
    assert isinstance(first, InputRequiredResult)
    assert first.request_state is not None and first.input_requests is not None
    return first


async def test_replayed_confirmation_is_refused(gateway: Gateway) -> None:
    args = _booking(gateway)
    server = build_server(gateway, transport="in-memory", principal=staff())
    async with Client(server, elicitation_callback=_accept()) as client:
        await client.list_tools()
        first = await _first_round(client, args)
        yes = {"confirm": ElicitResult(action="accept", content={"confirm": True})}
        done = await client.session.call_tool(
            "book_appointment", args, input_responses=yes, request_state=first.request_state
        )
        assert not done.is_error and structured(done)["proposal"]["status"] == "applied"
        again = await client.session.call_tool(
            "book_appointment", args, input_responses=yes, request_state=first.request_state
        )
    assert again.is_error and "already used" in again.content[0].text
    assert gateway.store.counts()["Appointment"] == sum(1 for _ in gateway.store.iter_type("Appointment"))
    written = [r for r in _audit(gateway) if r.interaction == "write.confirm" and r.outcome == "success"]
    assert len(written) == 1


async def test_forged_request_state_is_refused(gateway: Gateway) -> None:
    args = _booking(gateway)
    before = gateway.store.counts().get("Appointment", 0)
    async with Client(
        build_server(gateway, transport="in-memory", principal=staff()), elicitation_callback=_accept()
    ) as client:
        await client.list_tools()
        first = await _first_round(client, args)
        state = first.request_state or ""
        forged = state[:-4] + ("AAAA" if not state.endswith("AAAA") else "BBBB")
        yes = {"confirm": ElicitResult(action="accept", content={"confirm": True})}
        with pytest.raises(MCPError):
            await client.session.call_tool("book_appointment", args, input_responses=yes, request_state=forged)
        plain = orjson.dumps({"v": 1, "tool": "book_appointment", "proposal": "prop-x", "token": "v1.x"}).decode()
        with pytest.raises(MCPError):
            await client.session.call_tool("book_appointment", args, input_responses=yes, request_state=plain)
    assert gateway.store.counts().get("Appointment", 0) == before


async def test_confirmation_of_other_arguments_is_refused(gateway: Gateway) -> None:
    args = _booking(gateway)
    async with Client(
        build_server(gateway, transport="in-memory", principal=staff()), elicitation_callback=_accept()
    ) as client:
        await client.list_tools()
        first = await _first_round(client, args)
        yes = {"confirm": ElicitResult(action="accept", content={"confirm": True})}
        changed = {**args, "minutes": 60}
        # The SDK binds requestState to the request it was minted for (tool and arguments): refused as
        # a protocol error before the tool runs; the tool's own argument digest is the second line.
        with pytest.raises(MCPError):
            await client.session.call_tool(
                "book_appointment", changed, input_responses=yes, request_state=first.request_state
            )
    pending = gateway.writes.proposals.list()
    assert [p.status for p in pending] == ["pending"]


async def test_another_principal_cannot_use_the_confirmation(gateway: Gateway) -> None:
    args = _booking(gateway)
    async with Client(
        build_server(gateway, transport="in-memory", principal=staff()), elicitation_callback=_accept()
    ) as client:
        await client.list_tools()
        first = await _first_round(client, args)
    yes = {"confirm": ElicitResult(action="accept", content={"confirm": True})}
    async with Client(
        build_server(gateway, transport="in-memory", principal=staff("mallory")), elicitation_callback=_accept()
    ) as other:
        await other.list_tools()
        try:
            result = await other.session.call_tool(
                "book_appointment", args, input_responses=yes, request_state=first.request_state
            )
        except MCPError:
            result = None
    if result is not None:
        assert result.is_error
    assert [p.status for p in gateway.writes.proposals.list()] == ["pending"]


async def test_confirmation_survives_another_server_with_the_same_key(gateway: Gateway) -> None:
    """A second worker (another MCPServer over the same data directory key) accepts the sealed state."""
    args = _booking(gateway)
    yes = {"confirm": ElicitResult(action="accept", content={"confirm": True})}
    async with Client(
        build_server(gateway, transport="in-memory", principal=staff()), elicitation_callback=_accept()
    ) as a:
        await a.list_tools()
        first = await _first_round(a, args)
    async with Client(
        build_server(gateway, transport="in-memory", principal=staff()), elicitation_callback=_accept()
    ) as b:
        await b.list_tools()
        done = await b.session.call_tool(
            "book_appointment", args, input_responses=yes, request_state=first.request_state
        )
    assert not done.is_error and structured(done)["proposal"]["status"] == "applied"
