"""Fact rows and patient cards: the concise shapes patient_summary and find_patients return."""

from __future__ import annotations

import orjson

from fhirgate.core.fhir.facts import fact, patient_card

PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "identifier": [
        {"type": {"coding": [{"code": "MR"}]}, "system": "urn:mrn", "value": "12345"},
        {"type": {"coding": [{"code": "SS"}]}, "system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-11-2222"},
    ],
    "active": True,
    "name": [{"given": ["Ana"], "family": "Lopez"}],
    "gender": "female",
    "birthDate": "1970-02-03",
    "telecom": [{"system": "email", "value": "a@example.org"}, {"system": "phone", "value": "555-0100"}],
    "address": [{"line": ["1 Main St"], "city": "Springfield", "state": "IL", "postalCode": "62701"}],
    "contact": [{"name": {"family": "Lopez", "given": ["Luis"]}}],
    "generalPractitioner": [{"reference": "Practitioner/pr1", "display": "Dr. Kim"}],
}

BP = {
    "resourceType": "Observation",
    "id": "bp",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"}]},
    "effectiveDateTime": "2024-01-02T10:00:00Z",
    "component": [
        {"code": {"text": "Systolic"}, "valueQuantity": {"value": 120, "unit": "mm[Hg]"}},
        {"code": {"text": "Diastolic"}, "valueQuantity": {"value": 80, "unit": "mm[Hg]"}},
    ],
}


def test_patient_card_keeps_list_fields_only() -> None:
    card = patient_card(PATIENT)
    assert card == {
        "id": "p1",
        "name": "Ana Lopez",
        "gender": "female",
        "birthDate": "1970-02-03",
        "mrn": "12345",
        "phone": "555-0100",
        "city": "Springfield, IL",
        "active": True,
        "general_practitioner": "Practitioner/pr1",
        "general_practitioner_name": "Dr. Kim",
    }
    raw = orjson.dumps(card)
    # Minimum necessary: no SSN, street, postal code, e-mail or contacts in a list row.
    for leaked in (b"999-11-2222", b"Main St", b"62701", b"a@example.org", b"Luis"):
        assert leaked not in raw


def test_fact_row_of_an_observation_with_components() -> None:
    assert fact(BP) == {
        "ref": "Observation/bp",
        "date": "2024-01-02",
        "code": "http://loinc.org|85354-9",
        "display": "Blood pressure panel",
        "value": "Systolic 120 mm[Hg]; Diastolic 80 mm[Hg]",
        "status": "final",
    }


def test_fact_row_of_a_condition_uses_clinical_status() -> None:
    condition = {
        "resourceType": "Condition",
        "id": "c1",
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9"}], "text": "Diabetes"},
        "onsetDateTime": "2019-03-01",
    }
    row = fact(condition)
    assert row["code"] == "http://hl7.org/fhir/sid/icd-10-cm|E11.9"
    assert row["display"] == "Diabetes"
    assert row["status"] == "active"
    assert row["date"] == "2019-03-01"
    assert len(orjson.dumps(row)) < len(orjson.dumps(condition)) + 40
