"""extract(): index rows per parameter type on hand-written resources, and its error handling."""

from __future__ import annotations

from typing import Any

import pytest

from fhirgate.core.fhir.dates import parse_date_range
from fhirgate.core.fhir.extract import OPEN_HIGH, OPEN_LOW, extract
from fhirgate.errors import InvalidInput

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "meta": {"lastUpdated": "2024-01-01T00:00:00Z", "tag": [{"system": "urn:t", "code": "demo"}]},
    "identifier": [{"system": "urn:mrn", "value": "MRN-1", "type": {"text": "MRN"}}],
    "active": True,
    "name": [{"use": "official", "family": "Zoë", "given": ["Ann", "Marie"], "prefix": ["Dr."]}],
    "telecom": [{"system": "phone", "value": "555-1"}, {"system": "email", "value": "a@b.c"}],
    "gender": "female",
    "birthDate": "1970-03",
    "deceasedDateTime": "2020-01-02",
    "address": [{"line": ["1 Main St", "Apt 2"], "city": "Springfield", "state": "MA", "postalCode": "01101"}],
    "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "en", "display": "English"}]}}],
    "generalPractitioner": [{"reference": "Practitioner/dr1"}],
    "link": [{"other": {"reference": "Patient/p0"}, "type": "replaces"}],
}


def test_patient_rows() -> None:
    rows = extract(PATIENT)
    assert ("identifier", "urn:mrn", "MRN-1") in rows.token
    assert ("active", None, "true") in rows.token
    assert ("gender", None, "female") in rows.token
    assert ("deceased", None, "true") in rows.token
    assert ("phone", "phone", "555-1") in rows.token
    assert ("email", "email", "a@b.c") in rows.token
    assert ("telecom", "phone", "555-1") in rows.token
    assert ("_tag", "urn:t", "demo") in rows.token
    assert not any(r[1] == "phone" for r in rows.token if r[0] == "email")
    assert ("language", "urn:ietf:bcp:47", "en") in rows.token
    assert ("language", "english") in rows.token_text
    assert ("family", "zoe", "Zoë") in rows.string
    for part in ("zoe", "ann", "marie", "dr."):
        assert any(r[0] == "name" and r[1] == part for r in rows.string), part
    assert not any(r[1] == "official" for r in rows.string)  # HumanName.use is not a name part
    assert ("address", "1 main st", "1 Main St") in rows.string
    assert ("address-city", "springfield", "Springfield") in rows.string
    assert ("address-postalcode", "01101", "01101") in rows.string
    assert ("birthdate", *parse_date_range("1970-03")) in rows.date
    assert ("death-date", *parse_date_range("2020-01-02")) in rows.date
    assert ("general-practitioner", "Practitioner", "dr1", "Practitioner/dr1") in rows.reference
    assert ("link", "Patient", "p0", "Patient/p0") in rows.reference
    assert not any(r[0] in ("_id", "_lastUpdated") for r in rows.token + rows.date)  # store-native
    # Own compartment first, then the linked Patient's (FHIR R4 §3.2.0).
    assert rows.patients == ["p1", "p0"]


def test_not_deceased_is_indexed_false() -> None:
    rows = extract({"resourceType": "Patient", "id": "p2"})
    assert rows.token == [("deceased", None, "false")]
    assert rows.patients == ["p2"]


def test_observation_rows() -> None:
    obs = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "category": [{"coding": [{"system": "urn:cat", "code": "vital-signs", "display": "Vital Signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}], "text": "Blood Pressure"},
        "subject": {"reference": "Patient/p1"},
        "performer": [{"reference": "Practitioner/dr1"}, {"reference": "Patient/p1"}],
        "effectivePeriod": {"start": "2021-05-01T10:00:00Z"},
        "valueQuantity": {"value": 120.5, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org"},
        "component": [
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}, "valueQuantity": {"value": 120}},
            {"code": {"text": "Mood"}, "valueCodeableConcept": {"coding": [{"code": "happy"}]}},
        ],
    }
    rows = extract(obs)
    assert ("code", "http://loinc.org", "85354-9") in rows.token
    assert ("code", "blood pressure") in rows.token_text
    assert ("category", "vital signs") in rows.token_text
    assert ("combo-code", "http://loinc.org", "8480-6") in rows.token
    assert ("component-code", "mood") in rows.token_text
    assert ("component-value-concept", None, "happy") in rows.token
    assert ("value-quantity", 120.5, "http://unitsofmeasure.org", "mm[Hg]") in rows.quantity  # unit when no code
    assert ("component-value-quantity", 120.0, None, None) in rows.quantity
    low, _ = parse_date_range("2021-05-01T10:00:00Z")
    assert rows.date == [("date", low, OPEN_HIGH)]  # open-ended Period
    assert ("patient", "Patient", "p1", "Patient/p1") in rows.reference
    assert ("performer", "Practitioner", "dr1", "Practitioner/dr1") in rows.reference
    assert rows.patients == ["p1"]  # deduplicated across subject and performer
    assert len(rows.token) == len(set(rows.token))


def test_date_shapes() -> None:
    med = {
        "resourceType": "MedicationRequest",
        "id": "m1",
        "subject": {"reference": "Patient/p1"},
        "authoredOn": "2020-02-29T23:59:59.5+02:00",
        "dosageInstruction": [{"timing": {"event": ["2020-03-01", "not a date"]}}],
    }
    rows = extract(med)
    assert ("authoredon", *parse_date_range("2020-02-29T23:59:59.5+02:00")) in rows.date
    assert ("date", *parse_date_range("2020-03-01")) in rows.date
    assert len(rows.date) == 2  # the bad event yields no row
    plan = {
        "resourceType": "CarePlan",
        "id": "c1",
        "period": {"end": "2019"},
        "activity": [{"detail": {"scheduledTiming": {"repeat": {"boundsPeriod": {"start": "2020-01-01"}}}}}],
    }
    rows = extract(plan)
    assert ("date", OPEN_LOW, parse_date_range("2019")[1]) in rows.date
    assert ("activity-date", parse_date_range("2020-01-01")[0], OPEN_HIGH) in rows.date
    proc = {"resourceType": "Procedure", "id": "x", "performedString": "last spring"}
    assert extract(proc).date == []


def test_reference_and_uri_shapes() -> None:
    proc = {
        "resourceType": "Procedure",
        "id": "pr1",
        "subject": {"reference": "urn:uuid:abc"},
        "performer": [{"actor": {"reference": "https://other.org/fhir/Patient/p9"}}],
        "instantiatesCanonical": ["http://example.org/fhir/PlanDefinition/pd1|2.0"],
        "instantiatesUri": ["http://example.org/protocol"],
        "location": {"display": "no reference"},
    }
    rows = extract(proc)
    assert ("subject", None, None, "urn:uuid:abc") in rows.reference
    assert ("performer", "Patient", "p9", "https://other.org/fhir/Patient/p9") in rows.reference
    assert (
        "instantiates-canonical",
        "PlanDefinition",
        "pd1",
        "http://example.org/fhir/PlanDefinition/pd1|2.0",
    ) in rows.reference
    assert ("instantiates-uri", "http://example.org/protocol") in rows.uri
    assert not any(r[0] == "location" for r in rows.reference)
    # An absolute URL naming some Patient/p9 does not put the resource in local p9's compartment.
    assert rows.patients == []


def test_quantity_money_and_range() -> None:
    invoice = {
        "resourceType": "Invoice",
        "id": "i1",
        "totalNet": {"value": 10, "currency": "USD"},
        "totalGross": {"value": 12.5, "currency": "USD"},
        "subject": {"reference": "Patient/p1"},
        "recipient": {"reference": "Patient/p2"},
    }
    rows = extract(invoice)
    assert ("totalnet", 10.0, "urn:iso:std:iso:4217", "USD") in rows.quantity
    assert ("totalgross", 12.5, "urn:iso:std:iso:4217", "USD") in rows.quantity
    assert rows.patients == ["p1", "p2"]
    cond = {"resourceType": "Condition", "id": "c", "onsetRange": {"low": {"value": 2}, "high": {"value": 4}}}
    values = sorted(r[1] for r in extract(cond).quantity if r[0] == "onset-age")
    assert values == [2.0, 4.0]


def test_rows_are_deduplicated() -> None:
    coding = {"system": "urn:s", "code": "c", "display": "Same"}
    cond = {"resourceType": "Condition", "id": "c", "code": {"coding": [coding, coding], "text": "same"}}
    rows = extract(cond)
    assert rows.token.count(("code", "urn:s", "c")) == 1
    assert rows.token_text.count(("code", "same")) == 1


def test_types_without_compartment() -> None:
    prac = {
        "resourceType": "Practitioner",
        "id": "dr1",
        "name": [{"family": "Who", "given": ["Doctor"]}],
        "qualification": [{"code": {"text": "MD"}}],
    }
    rows = extract(prac)
    assert ("family", "who", "Who") in rows.string
    assert rows.patients == []


@pytest.mark.parametrize("bad", [{}, {"resourceType": "Group"}, {"resourceType": 5}, [], "Patient"])
def test_unsupported_resource_raises_invalid_input(bad: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        extract(bad)
    assert info.value.param == "resourceType"


def test_malformed_elements_never_raise_raw_errors() -> None:
    weird: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "w",
        "code": "not-a-codeable-concept",
        "category": [None, 5, {"coding": {"code": "x"}}, {"coding": [None, "s"]}],
        "subject": ["Patient/1"],
        "effectiveDateTime": 20200101,
        "valueQuantity": {"value": "12"},
        "component": [{"code": None}, "x"],
        "meta": {"profile": [None, 3]},
    }
    rows = extract(weird)  # bad shapes are skipped, never a raw TypeError/AttributeError
    assert rows.quantity == []
    assert rows.date == []
    assert rows.patients == []
    assert rows.uri == []
