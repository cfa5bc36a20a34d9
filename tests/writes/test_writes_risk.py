"""The risk table: each rule fires on its case, and the level is high when any reason is high."""

from __future__ import annotations

from typing import Any

import pytest
from writes_helpers import appointment

from fhirgate.core.writes.risk import WriteChange, assess, assess_one
from fhirgate.errors import InvalidInput

R_LABEL = {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
PSY_LABEL = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}
NORMAL_LABEL = {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}


def condition(**extra: Any) -> dict[str, Any]:
    body = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}, "meta": {"versionId": "1"}}
    body.update(extra)
    return body


def labelled(body: dict[str, Any], *labels: dict[str, str]) -> dict[str, Any]:
    return {**body, "meta": {**body.get("meta", {}), "security": list(labels)}}


@pytest.mark.parametrize(
    ("old_status", "new_status", "level", "code"),
    [
        ("booked", "cancelled", "low", "risk.status.routine"),
        ("booked", "arrived", "low", "risk.status.routine"),
        ("booked", "noshow", "low", "risk.status.routine"),
        ("pending", "booked", "low", "risk.status.routine"),
        ("booked", "entered-in-error", "high", "risk.status.entered_in_error"),
        ("cancelled", "booked", "high", "risk.status.reopen"),
        ("noshow", "arrived", "high", "risk.status.reopen"),
        ("fulfilled", "booked", "high", "risk.status.reopen"),
    ],
)
def test_appointment_status_transitions(old_status: str, new_status: str, level: str, code: str) -> None:
    result = assess_one("update", "Appointment", appointment(old_status), appointment(new_status, version=None))
    assert result.level == level
    assert code in result.codes
    assert "risk.administrative" in result.codes


def test_rescheduling_is_low_and_clinical_elements_of_an_appointment_are_high() -> None:
    moved = appointment(version=None, start="2026-06-03T09:00:00Z", end="2026-06-03T09:20:00Z")
    assert assess_one("update", "Appointment", appointment(), moved).level == "low"
    with_reason = appointment(version=None, reasonCode=[{"text": "chest pain"}])
    result = assess_one("update", "Appointment", appointment(), with_reason)
    assert result.level == "high"
    assert "risk.clinical_element" in result.codes
    assert any("reasonCode" in r.detail for r in result.reasons)
    # The detail names elements, never the value.
    assert not any("chest" in r.detail for r in result.reasons)


def test_booking_a_new_appointment_is_low() -> None:
    result = assess_one("create", "Appointment", None, appointment(version=None))
    assert result.level == "low"
    assert result.patients == ("p1",)


@pytest.mark.parametrize("rtype", ["Condition", "MedicationRequest", "Observation", "AllergyIntolerance", "Procedure"])
def test_clinical_types_are_high(rtype: str) -> None:
    body = {"resourceType": rtype, "id": "x1"}
    result = assess_one("create", rtype, None, body)
    assert result.high and "risk.clinical" in result.codes


def test_draft_note_is_low_but_a_final_note_or_an_edit_is_high() -> None:
    note = {"resourceType": "DocumentReference", "id": "n1", "status": "current", "docStatus": "preliminary"}
    assert assess_one("create", "DocumentReference", None, note).codes == ("risk.clinical_draft",)
    assert assess_one("create", "DocumentReference", None, {**note, "docStatus": "final"}).high
    current = {**note, "meta": {"versionId": "1"}}
    assert assess_one("update", "DocumentReference", current, {**note, "description": "x"}).high


def test_unknown_types_fail_closed() -> None:
    result = assess_one("create", "Patient", None, {"resourceType": "Patient", "id": "p9"})
    assert result.high and result.codes == ("risk.unclassified",)


def test_delete_is_high_even_for_scheduling() -> None:
    result = assess_one("delete", "Appointment", appointment(), None)
    assert result.high and "risk.delete" in result.codes


@pytest.mark.parametrize("where", ["old", "new"])
def test_sensitive_label_on_either_version_is_high(where: str) -> None:
    old = appointment()
    new = appointment("cancelled", version=None)
    if where == "old":
        old = labelled(old, PSY_LABEL)
        new = labelled(new, PSY_LABEL)
    else:
        new = labelled(new, R_LABEL)
    result = assess_one("update", "Appointment", old, new)
    assert result.high and "risk.sensitive_label" in result.codes


def test_removing_any_label_is_high_and_non_sensitive_labels_alone_are_not() -> None:
    old = labelled(appointment(), NORMAL_LABEL)
    kept = labelled(appointment("cancelled", version=None), NORMAL_LABEL)
    assert assess_one("update", "Appointment", old, kept).level == "low"
    stripped = appointment("cancelled", version=None)
    result = assess_one("update", "Appointment", old, stripped)
    assert result.high and "risk.label_change" in result.codes
    # A custom sensitive set is honoured.
    assert assess_one("update", "Appointment", old, kept, sensitive=frozenset({"N"})).high


def test_moving_an_appointment_to_another_patient_is_high() -> None:
    result = assess_one("update", "Appointment", appointment(), appointment(version=None, patient="p2"))
    assert result.high and "risk.multi_patient" in result.codes
    assert result.patients == ("p1", "p2")


def test_bulk_and_scope_rules() -> None:
    changes = [
        WriteChange("create", "Slot", None, {"resourceType": "Slot", "id": f"s{i}", "status": "free"}) for i in range(4)
    ]
    assert assess(changes[:3]).level == "low"
    result = assess(changes)
    assert result.high and "risk.bulk" in result.codes
    assert assess(changes[:1], bulk_limit=5).level == "low"
    system = assess(changes[:1], scope_context="system")
    assert system.high and "risk.scope.system" in system.codes
    assert assess(changes[:1], scope_context="patient").level == "low"


def test_reasons_are_deduplicated_and_level_is_worst_of_all() -> None:
    changes = [
        WriteChange("create", "Slot", None, {"resourceType": "Slot", "id": "s1"}),
        WriteChange("create", "Condition", None, condition()),
    ]
    result = assess(changes)
    assert result.level == "high"
    assert result.codes.count("risk.administrative") == 1
    assert result.codes[-1] == "risk.clinical"


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [({"scope_context": "admin"}, "scope_context"), ({"bulk_limit": 0}, "bulk_limit")],
)
def test_bad_arguments_raise_invalid_input(kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidInput) as info:
        assess([WriteChange("create", "Slot", None, {"resourceType": "Slot", "id": "s"})], **kwargs)
    assert info.value.param == param
    with pytest.raises(InvalidInput):
        assess([])
    with pytest.raises(InvalidInput):
        assess([WriteChange("patch", "Slot", None, None)])
