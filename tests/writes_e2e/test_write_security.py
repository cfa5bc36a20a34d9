"""Writes must not reach what reads may not: an opted-out patient, a withheld label, another patient's record."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
from writes_support import free_slot, practitioner_with_slots, some_patient, staff

from fhirgate.core.policy.labels import labels_of
from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.scopes import ScopeSet
from fhirgate.errors import AccessDenied, NotFound
from fhirgate.service.context import RequestContext
from fhirgate.service.gateway import Gateway

SENSITIVE = {"R", "V", "ETH", "PSY", "HIV", "STD", "SDV", "SEX", "BH", "GDIS", "42CFRPart2"}


def _ctx(p: Principal, tool: str) -> RequestContext:
    return RequestContext(p, name=tool)


def test_opted_out_patient_gets_no_note_and_no_booking(gateway: Gateway) -> None:
    optouts = sorted(gateway.governance.consents().patients_opted_out(dt.date.today()))
    assert optouts, "the demo practice has patients who opted out of AI access"
    with pytest.raises(NotFound):  # the patient is invisible, exactly as to a read
        gateway.add_clinical_note(_ctx(staff(), "add_clinical_note"), patient_id=optouts[0], text="Called back.")
    doctor = practitioner_with_slots(gateway.store)
    with pytest.raises((AccessDenied, NotFound)):
        gateway.book_appointment(
            _ctx(staff(), "book_appointment"),
            patient_id=optouts[0],
            practitioner_id=doctor,
            start=free_slot(gateway.store, doctor)["start"],
            minutes=30,
        )
    assert gateway.writes.proposals.list() == []


def test_resource_with_a_withheld_label_cannot_be_updated(gateway: Gateway) -> None:
    labelled = next(s for s in gateway.store.iter_type("DocumentReference") if labels_of(s.body) & SENSITIVE)
    body = {**labelled.body, "description": "changed"}
    with pytest.raises(NotFound):  # exactly like a read of it: not found, not "forbidden"
        gateway.update_resource(_ctx(staff(), "update_resource"), body)
    assert gateway.writes.proposals.list() == []


def test_a_new_resource_may_not_carry_a_label_the_role_cannot_see(gateway: Gateway) -> None:
    patient = some_patient(gateway.store, gateway, skip=16)
    note = {
        "resourceType": "DocumentReference",
        "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}]},
        "status": "current",
        "docStatus": "preliminary",
        "subject": {"reference": f"Patient/{patient}"},
        "content": [{"attachment": {"contentType": "text/plain", "data": "aGk="}}],
    }
    with pytest.raises(AccessDenied) as err:
        gateway.create_resource(_ctx(staff(), "create_resource"), note)
    assert err.value.reason is not None and err.value.reason.startswith("label.")
    assert gateway.writes.proposals.list() == []


def test_patient_may_book_only_for_themselves(gateway: Gateway) -> None:
    me = some_patient(gateway.store, gateway, skip=17)
    other = some_patient(gateway.store, gateway, skip=18)
    patient = Principal(
        sub="pat",
        issuer="urn:test",
        scopes=ScopeSet.parse("patient/*.cruds launch/patient"),
        client_id="tests",
        patient=me,
    )
    doctor = practitioner_with_slots(gateway.store)
    start = free_slot(gateway.store, doctor)["start"]
    with pytest.raises((AccessDenied, NotFound)):
        gateway.book_appointment(
            _ctx(patient, "book_appointment"), patient_id=other, practitioner_id=doctor, start=start, minutes=30
        )
    assert gateway.writes.proposals.list() == []
    out = gateway.book_appointment(
        _ctx(patient, "book_appointment"), patient_id=me, practitioner_id=doctor, start=start, minutes=30
    )
    assert out["proposal"]["status"] == "pending"


def test_read_only_scopes_cannot_write_even_with_a_writing_role(gateway: Gateway) -> None:
    front = replace(staff("fd"), role="front_desk", scopes=ScopeSet.parse("user/*.rs"))
    doctor = practitioner_with_slots(gateway.store)
    with pytest.raises(AccessDenied) as err:
        gateway.book_appointment(
            _ctx(front, "book_appointment"),
            patient_id=some_patient(gateway.store, gateway, skip=19),
            practitioner_id=doctor,
            start=free_slot(gateway.store, doctor)["start"],
            minutes=30,
        )
    assert "Appointment.c" in err.value.message
