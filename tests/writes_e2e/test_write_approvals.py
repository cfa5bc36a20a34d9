"""Proposals that wait for a person: approval at the CLI applies them, and every way to break that fails.

Conflicting concurrent bookings, stale versions, self-approval of high-risk proposals, expiry, invalid and
dangling resources, roles without write types: each gets a clear error, nothing is partly written, and the
decision and the write are audited with the proposal id and the decider.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import replace
from typing import Any

import pytest
from writes_support import clinician, free_slot, practitioner_with_slots, some_patient, staff

from fhirgate.audit.log import AuditLog
from fhirgate.cli.main import main
from fhirgate.config import DataDir
from fhirgate.core.policy.principal import Principal
from fhirgate.errors import AccessDenied, Conflict, InvalidInput, NotFound
from fhirgate.service.approvals import ApprovalDesk
from fhirgate.service.auditing import AuditWriter
from fhirgate.service.context import RequestContext
from fhirgate.service.gateway import Gateway
from fhirgate.writes.applier import apply_proposal


def _ctx(p: Principal, tool: str) -> RequestContext:
    return RequestContext(p, name=tool)


def _book(gateway: Gateway, p: Principal, *, skip: int = 0, patient_skip: int = 0, **extra: Any) -> dict[str, Any]:
    store = gateway.store
    doctor = practitioner_with_slots(store)
    slot = free_slot(store, doctor, skip=skip)
    args = {
        "patient_id": some_patient(store, gateway, skip=patient_skip),
        "practitioner_id": doctor,
        "start": slot["start"],
        "minutes": 30,
        **extra,
    }
    return gateway.book_appointment(_ctx(p, "book_appointment"), **args)


def _desk(gateway: Gateway) -> ApprovalDesk:
    return ApprovalDesk(gateway.store, gateway.writes.proposals, AuditWriter(gateway.audit_sink))


def _records(gateway: Gateway) -> list[Any]:
    log = gateway.audit_sink
    assert isinstance(log, AuditLog)
    return [e.record for e in log.iter()]


def test_approval_at_the_desk_writes_and_audits(gateway: Gateway) -> None:
    out = _book(gateway, staff())
    pid = out["proposal"]["id"]
    assert out["proposal"]["status"] == "pending" and out["proposal"]["risk"] == "low"
    decision = _desk(gateway).decide(pid, "Office Manager", True, "ok")
    assert decision.proposal.status == "applied" and decision.applied is not None and decision.applied.ok
    target = out["proposal"]["target"]
    stored = gateway.store.read(*target.split("/"))
    assert stored is not None and stored.version == 1
    mine = [r for r in _records(gateway) if r.proposal == pid]
    kinds = [(r.interaction, r.balp_kind, r.outcome, r.decider) for r in mine]
    assert ("write.propose", "operation", "success", None) in kinds
    assert ("write.approve", "operation", "success", "Office Manager") in kinds
    assert ("write.apply", "create", "success", "Office Manager") in kinds
    status = gateway.proposal_status(_ctx(staff(), "proposal_status"), pid)
    assert status["proposal"]["status"] == "applied" and target in status["next_step"]


def test_conflicting_bookings_of_one_slot_only_one_lands(gateway: Gateway) -> None:
    first = _book(gateway, staff("alice"), patient_skip=0)
    second = _book(gateway, staff("bob"), patient_skip=1)
    assert first["proposal"]["target"] != second["proposal"]["target"]
    desk = _desk(gateway)
    a = desk.decide(first["proposal"]["id"], "manager", True)
    b = desk.decide(second["proposal"]["id"], "manager", True)
    assert a.proposal.status == "applied"
    assert b.proposal.status == "failed" and "no longer free" in (b.proposal.outcome or "")
    assert gateway.store.read(*second["proposal"]["target"].split("/")) is None
    failed = [r for r in _records(gateway) if r.proposal == second["proposal"]["id"] and r.interaction == "write.apply"]
    assert failed and failed[0].outcome == "error" and failed[0].reason == "conflict"


def test_concurrent_applies_race_and_one_wins(gateway: Gateway) -> None:
    """Two approved bookings of one slot applied at the same moment from two threads: exactly one lands."""
    for round_ in range(3):
        one = _book(gateway, staff(f"a{round_}"), skip=round_, patient_skip=2)
        two = _book(gateway, staff(f"b{round_}"), skip=round_, patient_skip=3)
        proposals = gateway.writes.proposals
        approved = [
            proposals.decide(one["proposal"]["id"], "manager", True),
            proposals.decide(two["proposal"]["id"], "manager", True),
        ]
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def run(p: Any, barrier: threading.Barrier, outcomes: list[str]) -> None:
            barrier.wait()
            outcomes.append(apply_proposal(gateway.store, gateway.writes.proposals, p).proposal.status)

        threads = [threading.Thread(target=run, args=(p, barrier, outcomes)) for p in approved]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["applied", "failed"], outcomes


def test_booking_a_taken_time_is_refused_at_proposal(gateway: Gateway) -> None:
    """Once a booking is written, proposing the same time again is refused before any proposal is stored."""
    first = _book(gateway, staff(), patient_skip=4)
    _desk(gateway).decide(first["proposal"]["id"], "manager", True)
    written = gateway.store.read(*first["proposal"]["target"].split("/"))
    assert written is not None
    before = len(gateway.writes.proposals.list())
    with pytest.raises(Conflict) as err:
        gateway.book_appointment(
            _ctx(staff(), "book_appointment"),
            patient_id=some_patient(gateway.store, gateway, skip=15),
            practitioner_id=practitioner_with_slots(gateway.store),
            start=written.body["start"],
            minutes=30,
        )
    assert "Slot/" in err.value.message and "busy" in err.value.message
    assert len(gateway.writes.proposals.list()) == before


def test_clinical_create_is_high_risk_and_typed_by_role(gateway: Gateway) -> None:
    doctor = practitioner_with_slots(gateway.store)
    team = sorted(gateway.governance.care_team(clinician(doctor)))
    condition = {
        "resourceType": "Condition",
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
        },
        "code": {"text": "seasonal allergy"},
        "subject": {"reference": f"Patient/{team[0]}"},
    }
    out = gateway.create_resource(_ctx(clinician(doctor), "create_resource"), condition)
    assert out["proposal"]["risk"] == "high" and "risk.clinical" in out["proposal"]["risk_reasons"]
    assert out["proposal"]["status"] == "pending" and "someone other than the proposer" in out["next_step"]
    with pytest.raises(AccessDenied) as err:  # practice_staff writes Appointment and DocumentReference only
        gateway.create_resource(_ctx(staff(), "create_resource"), condition)
    assert err.value.reason == "writes.type_not_allowed"


def test_self_approval_of_high_risk_is_refused_and_audited(gateway: Gateway) -> None:
    out = _book(gateway, staff("carol"), patient_skip=6, reason="chest pain follow-up")
    pid = out["proposal"]["id"]
    assert out["proposal"]["risk"] == "high"  # a reason is clinical (Appointment.reasonCode)
    with pytest.raises(AccessDenied) as err:
        _desk(gateway).decide(pid, "urn:test#carol", True)
    assert err.value.reason == "approval.self_approval"
    with pytest.raises(AccessDenied):
        _desk(gateway).decide(pid, "carol", True)
    refused = [r for r in _records(gateway) if r.proposal == pid and r.interaction == "write.approve"]
    assert refused and all(r.outcome == "denied" for r in refused)
    assert gateway.writes.proposals.get(pid).status == "pending"
    assert _desk(gateway).decide(pid, "Dr Second", True).proposal.status == "applied"


def test_expired_proposal_cannot_be_approved(gateway: Gateway) -> None:
    out = _book(gateway, staff(), patient_skip=7)
    proposals = gateway.writes.proposals
    real = proposals._clock
    proposals._clock = lambda: real() + dt.timedelta(hours=25)
    try:
        with pytest.raises(Conflict) as err:
            _desk(gateway).decide(out["proposal"]["id"], "manager", True)
    finally:
        proposals._clock = real
    assert "expired" in err.value.message
    assert proposals.get(out["proposal"]["id"]).status == "expired"
    assert gateway.store.read(*out["proposal"]["target"].split("/")) is None


def test_stale_update_is_refused_with_a_clear_message(gateway: Gateway) -> None:
    patient = some_patient(gateway.store, gateway, skip=8)
    stored = gateway.store.read("Patient", patient)
    assert stored is not None
    body = {**stored.body, "active": True}
    body["meta"] = {**stored.body["meta"], "versionId": str(stored.version + 5)}
    with pytest.raises(Conflict) as err:
        gateway.update_resource(_ctx(staff(), "update_resource"), body)
    assert f"version {stored.version} is stored" in err.value.message
    assert gateway.writes.proposals.list() == []


def test_update_that_went_stale_fails_at_apply(gateway: Gateway) -> None:
    out = _book(gateway, staff(), patient_skip=9)
    _desk(gateway).decide(out["proposal"]["id"], "manager", True)
    appt_id = out["proposal"]["target"].split("/")[1]
    cancel = gateway.update_appointment(
        _ctx(staff(), "update_appointment"), appointment_id=appt_id, action="cancel", reason="patient asked"
    )
    # meanwhile someone else changes the appointment
    current = gateway.store.read("Appointment", appt_id)
    assert current is not None
    gateway.store.write([{**current.body, "comment": "moved by phone"}])
    decision = _desk(gateway).decide(cancel["proposal"]["id"], "manager", True)
    assert decision.proposal.status == "failed" and "changed since it was read" in (decision.proposal.outcome or "")
    after = gateway.store.read("Appointment", appt_id)
    assert after is not None and after.body["status"] == "booked"


def test_cancel_frees_the_slot(gateway: Gateway) -> None:
    out = _book(gateway, staff(), patient_skip=10)
    _desk(gateway).decide(out["proposal"]["id"], "manager", True)
    appt_id = out["proposal"]["target"].split("/")[1]
    appt = gateway.store.read("Appointment", appt_id)
    assert appt is not None
    slot_id = appt.body["slot"][0]["reference"].split("/")[1]
    cancel = gateway.update_appointment(
        _ctx(staff(), "update_appointment"), appointment_id=appt_id, action="cancel", reason="patient asked"
    )
    assert cancel["proposal"]["risk"] == "low"
    assert _desk(gateway).decide(cancel["proposal"]["id"], "manager", True).proposal.status == "applied"
    slot = gateway.store.read("Slot", slot_id)
    assert slot is not None and slot.body["status"] == "free"
    appt = gateway.store.read("Appointment", appt_id)
    assert appt is not None and appt.body["status"] == "cancelled" and appt.version == 2
    assert len(gateway.store.history("Appointment", appt_id)) == 2


def test_invalid_and_dangling_resources_store_nothing(gateway: Gateway) -> None:
    patient = some_patient(gateway.store, gateway, skip=11)
    bad = {"resourceType": "DocumentReference", "status": "not-a-status", "content": []}
    with pytest.raises(InvalidInput):
        gateway.create_resource(_ctx(staff(), "create_resource"), bad)
    dangling = {
        "resourceType": "DocumentReference",
        "status": "current",
        "docStatus": "preliminary",
        "subject": {"reference": "Patient/does-not-exist"},
        "content": [{"attachment": {"contentType": "text/plain", "data": "aGk="}}],
    }
    with pytest.raises(InvalidInput) as err:
        gateway.create_resource(_ctx(staff(), "create_resource"), dangling)
    assert "Patient/does-not-exist" in err.value.message
    with pytest.raises(InvalidInput):
        gateway.add_clinical_note(_ctx(staff(), "add_clinical_note"), patient_id=patient, text="   ")
    assert gateway.writes.proposals.list() == []


def test_note_is_a_low_risk_draft(gateway: Gateway) -> None:
    patient = some_patient(gateway.store, gateway, skip=12)
    out = gateway.add_clinical_note(
        _ctx(staff(), "add_clinical_note"),
        patient_id=patient,
        text="Patient called about refill.",
        note_type="telephone",
    )
    assert out["proposal"]["risk"] == "low" and out["proposal"]["risk_reasons"] == ["risk.clinical_draft"]
    decision = _desk(gateway).decide(out["proposal"]["id"], "manager", True)
    note = gateway.store.read(*out["proposal"]["target"].split("/"))
    assert decision.proposal.status == "applied" and note is not None
    assert note.body["docStatus"] == "preliminary"


def test_unknown_patient_is_not_found_and_nothing_proposed(gateway: Gateway) -> None:
    store = gateway.store
    doctor = practitioner_with_slots(store)
    slot = free_slot(store, doctor)
    with pytest.raises(NotFound):
        gateway.book_appointment(
            _ctx(staff(), "book_appointment"),
            patient_id="nobody",
            practitioner_id=doctor,
            start=slot["start"],
            minutes=30,
        )
    assert gateway.writes.proposals.list() == []


def test_role_without_write_types_is_refused(gateway: Gateway) -> None:
    billing = replace(staff("bill"), role="billing")
    with pytest.raises(AccessDenied) as err:
        _book(gateway, billing)
    assert err.value.reason in ("role.tool_not_allowed", "writes.not_allowed_for_role")
    front = replace(staff("fran"), role="front_desk")
    patient = some_patient(gateway.store, gateway, skip=13)
    with pytest.raises(AccessDenied):
        gateway.add_clinical_note(_ctx(front, "add_clinical_note"), patient_id=patient, text="note")
    assert gateway.writes.proposals.list() == []


def test_clinician_outside_care_team_cannot_write(gateway: Gateway) -> None:
    doctor = practitioner_with_slots(gateway.store)
    team = gateway.governance.care_team(clinician(doctor))
    outsider = next(p for p in (s.id for s in gateway.store.iter_type("Patient")) if p not in team)
    with pytest.raises((NotFound, AccessDenied)):
        gateway.add_clinical_note(_ctx(clinician(doctor), "add_clinical_note"), patient_id=outsider, text="note")
    assert gateway.writes.proposals.list() == []


def test_cli_approve_applies_and_exits_nonzero_when_refused(gateway: Gateway, data_dir: DataDir, capsys: Any) -> None:
    out = _book(gateway, staff("dan"), patient_skip=14, reason="rash")
    pid = out["proposal"]["id"]
    assert main(["approvals", "approve", pid, "--as", "urn:test#dan", "--data", str(data_dir.path)]) == 3
    assert main(["approvals", "approve", pid, "--as", "Nurse Lead", "--data", str(data_dir.path)]) == 0
    printed = capsys.readouterr().out
    assert "applied" in printed
    assert gateway.store.read(*out["proposal"]["target"].split("/")) is not None
    assert main(["approvals", "reject", pid, "--as", "x", "--reason", "late", "--data", str(data_dir.path)]) == 3
    assert main(["audit", "verify", "--data", str(data_dir.path)]) == 0
