"""Safe Harbor rules one identifier kind at a time (45 CFR 164.514(b)(2)(i)(A)-(R))."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest

from fhirgate.core.policy.deid import AGE_EXTENSION_URL, PSEUDED, DeidReport, SafeHarbor
from fhirgate.core.policy.pseudonym import Pseudonymizer
from fhirgate.core.policy.scrub import RESTRICTED_ZIP3, cap_age, over_89, year_of, zip3
from fhirgate.errors import InvalidInput

TODAY = dt.date(2025, 6, 30)
KEY = b"k" * 32


@pytest.fixture
def harbor() -> SafeHarbor:
    return SafeHarbor(Pseudonymizer(KEY, "analyst-1"), today=TODAY)


def deid(harbor: SafeHarbor, res: dict[str, Any]) -> tuple[dict[str, Any], DeidReport, str]:
    out, report = harbor.resource(res)
    return out, report, orjson.dumps(out).decode()


def patient(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"resourceType": "Patient", "id": "pat-1", "gender": "female", "birthDate": "1957-03-04"}
    base.update(extra)
    return base


def test_a_names_removed_everywhere(harbor: SafeHarbor) -> None:
    res = patient(
        name=[{"family": "Quintero", "given": ["Rosalind"], "text": "Rosalind Quintero"}],
        contact=[{"name": {"family": "Quintero", "given": ["Bartholomew"]}, "gender": "male"}],
        generalPractitioner=[{"reference": "Practitioner/d1", "display": "Dr. Wilhelmina Oakes"}],
    )
    out, report, text = deid(harbor, res)
    for word in ("Quintero", "Rosalind", "Bartholomew", "Wilhelmina", "Oakes"):
        assert word not in text
    assert out["contact"] == [{"gender": "male"}]
    assert {"Patient.name", "Patient.contact.name", "Patient.generalPractitioner.display"} <= report.paths
    assert "A" in report.kinds


def test_a_practitioner_and_string_names_removed(harbor: SafeHarbor) -> None:
    prac = {"resourceType": "Practitioner", "id": "d1", "name": [{"family": "Oakes", "prefix": ["Dr."]}]}
    team = {"resourceType": "CareTeam", "id": "t1", "name": "Care team of Rosalind Quintero", "status": "active"}
    assert "Oakes" not in deid(harbor, prac)[2]
    out, report, text = deid(harbor, team)
    assert "Quintero" not in text and out["status"] == "active"
    assert report.removed["CareTeam.name"] == {"A"}


def test_a_own_names_scrubbed_from_kept_displays(harbor: SafeHarbor) -> None:
    res = {
        "resourceType": "Condition",
        "id": "c1",
        "code": {"coding": [{"system": "http://x", "code": "1", "display": "Fracture at Quintero farm"}]},
        "contained": [{"resourceType": "Patient", "id": "p", "name": [{"family": "Quintero"}]}],
    }
    out, _, text = deid(harbor, res)
    assert "Quintero" not in text
    assert out["code"]["coding"][0]["display"] == "Fracture at [redacted] farm"


@pytest.mark.parametrize(
    ("postal", "expected"),
    [("62703", "627"), ("62703-1234", "627"), ("03601", "000"), ("89012", "000"), ("10001", "100")],
)
def test_b_zip3_rule(harbor: SafeHarbor, postal: str, expected: str) -> None:
    res = patient(
        address=[
            {
                "use": "home",
                "line": ["141 Woodland Dr"],
                "city": "Springfield",
                "district": "Sangamon",
                "state": "IL",
                "postalCode": postal,
                "country": "US",
                "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/geolocation"}],
            }
        ]
    )
    out, report, text = deid(harbor, res)
    assert out["address"] == [{"use": "home", "state": "IL", "postalCode": expected, "country": "US"}]
    assert "Woodland" not in text and "Springfield" not in text and "Sangamon" not in text
    assert report.generalized["Patient.address.postalCode"] == {"B"}


def test_b_restricted_zip3_list_and_non_us() -> None:
    assert len(RESTRICTED_ZIP3) == 17
    assert all(zip3(z + "12") == "000" for z in RESTRICTED_ZIP3)
    assert zip3("03712") == "037"
    assert zip3("K1A 0B1", "CA") is None
    assert zip3("12345", "Canada") is None
    assert zip3("1234") is None and zip3(12345) is None


def test_b_location_position_and_geolocation_removed(harbor: SafeHarbor) -> None:
    loc = {
        "resourceType": "Location",
        "id": "home",
        "position": {"latitude": 39.78, "longitude": -89.65},
        "address": {"city": "Springfield", "state": "IL"},
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/geolocation",
                "extension": [{"url": "latitude", "valueDecimal": 39.78}],
            }
        ],
    }
    out, report, text = deid(harbor, loc)
    assert "39.78" not in text and "position" not in out and "extension" not in out
    assert out["address"] == {"state": "IL"}
    assert report.removed["Location.position"] == {"B"}


def test_c_dates_become_year(harbor: SafeHarbor) -> None:
    obs = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "effectiveDateTime": "2023-01-16T14:11:00-06:00",
        "issued": "2023-01-16T14:11:00-06:00",
        "valuePeriod": {"start": "2023-01", "end": "2023-02-01"},
        "meta": {"lastUpdated": "2024-01-01T00:00:00Z", "versionId": "3"},
    }
    out, report, text = deid(harbor, obs)
    assert out["effectiveDateTime"] == "2023"
    assert out["valuePeriod"] == {"start": "2023", "end": "2023"}
    assert "issued" not in out  # instant: a year-only instant is not valid FHIR, so it is removed
    assert "01-16" not in text and "lastUpdated" not in text
    assert report.removed["Observation.issued"] == {"C"}
    assert "C" in report.kinds


def test_c_birth_date_year_and_over_89(harbor: SafeHarbor) -> None:
    young, _, _ = deid(harbor, patient(birthDate="1957-03-04", deceasedDateTime="2020-05-06"))
    assert young["birthDate"] == "1957" and young["deceasedDateTime"] == "2020"
    old, report, text = deid(harbor, patient(birthDate="1933-02-09"))
    assert "birthDate" not in old and "1933" not in text
    assert {"url": AGE_EXTENSION_URL, "valueString": "90+"} in old["extension"]
    assert "Patient.birthDate" in report.generalized


@pytest.mark.parametrize(
    ("birth", "over"),
    [("1935-06-30", True), ("1935-07-01", False), ("1935", True), ("1936", False), ("1935-07", False), ("x", True)],
)
def test_c_over_89_boundaries(birth: str, over: bool) -> None:
    # 2025-06-30: someone born 1935-06-30 turns 90 today; a partial date counts from its earliest day.
    assert over_89(birth, TODAY) is over


def test_c_age_quantities_capped(harbor: SafeHarbor) -> None:
    fmh = {
        "resourceType": "FamilyMemberHistory",
        "id": "f1",
        "status": "completed",
        "patient": {"reference": "Patient/pat-1"},
        "relationship": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH"}]},
        "ageAge": {"value": 97, "unit": "years", "system": "http://unitsofmeasure.org", "code": "a"},
        "condition": [{"code": {"text": "x"}, "onsetAge": {"value": 54, "unit": "yr", "code": "a"}}],
    }
    out, report, text = deid(harbor, fmh)
    assert out["ageAge"]["value"] == 90 and out["ageAge"]["comparator"] == ">="
    assert "97" not in text
    assert out["condition"][0]["onsetAge"]["value"] == 54
    assert cap_age({"value": 1100, "code": "mo"})[1] is True
    assert cap_age({"value": 1000, "code": "mo"})[1] is False
    assert cap_age({"value": 95, "comparator": "<", "code": "a"})[1] is False
    assert "FamilyMemberHistory.ageAge" in report.generalized


def test_d_e_f_telecom_removed(harbor: SafeHarbor) -> None:
    res = patient(
        telecom=[
            {"system": "phone", "value": "(217) 555-0106"},
            {"system": "fax", "value": "217-555-0199"},
            {"system": "email", "value": "rq@example.org"},
        ]
    )
    out, report, text = deid(harbor, res)
    assert "telecom" not in out and "555" not in text and "example.org" not in text
    assert report.removed["Patient.telecom"] == {"D", "E", "F"}


def test_g_to_k_identifiers_removed(harbor: SafeHarbor) -> None:
    v2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
    res = patient(
        identifier=[
            {"type": {"coding": [{"system": v2, "code": "SS"}]}, "value": "929675298"},
            {"type": {"coding": [{"system": v2, "code": "MR"}]}, "value": "2516164"},
            {"type": {"coding": [{"system": v2, "code": "DL"}]}, "value": "D123-4567"},
            {"system": "http://example.org/account", "value": "AC-99"},
        ]
    )
    out, report, text = deid(harbor, res)
    assert "identifier" not in out
    assert not any(v in text for v in ("929675298", "2516164", "D123-4567", "AC-99"))
    assert report.removed["Patient.identifier"] == {"G", "H", "K", "J"}
    cov = {
        "resourceType": "Coverage",
        "id": "c",
        "status": "active",
        "subscriberId": "LIN471389786",
        "identifier": [{"value": "LIN471389786"}],
        "class": [{"type": {"text": "group"}, "value": "GRP-5867", "name": "Lincolnland Employers PPO"}],
        "beneficiary": {"reference": "Patient/pat-1", "identifier": {"value": "X1"}},
    }
    out, report, text = deid(harbor, cov)
    assert "LIN471389786" not in text and "GRP-5867" not in text and "Lincolnland" not in text and "X1" not in text
    assert {"I", "A"} <= report.kinds


def test_l_m_device_ids_removed(harbor: SafeHarbor) -> None:
    dev = {
        "resourceType": "Device",
        "id": "d",
        "status": "active",
        "udiCarrier": [{"deviceIdentifier": "00844588003288", "carrierHRF": "(01)00844588003288(21)SN77"}],
        "serialNumber": "SN77",
        "lotNumber": "LOT-42",
        "distinctIdentifier": "DI-9",
        "url": "http://device.example.org/d",
        "type": {"coding": [{"system": "http://snomed.info/sct", "code": "14106009", "display": "Cardiac pacemaker"}]},
        "patient": {"reference": "Patient/pat-1"},
    }
    out, report, text = deid(harbor, dev)
    assert not any(v in text for v in ("00844588003288", "SN77", "LOT-42", "DI-9", "device.example"))
    assert out["type"]["coding"][0]["code"] == "14106009"
    assert "M" in report.kinds and "N" in report.kinds


def test_n_o_urls_and_ips(harbor: SafeHarbor) -> None:
    res = patient(
        extension=[
            {"url": "http://example.org/home-page", "valueUrl": "https://rosalind.example.net"},
            {"url": "http://example.org/last-login-ip", "valueString": "10.1.2.3"},
        ],
        implicitRules="http://rules.example.org",
    )
    _, report, text = deid(harbor, res)
    assert "rosalind.example.net" not in text and "10.1.2.3" not in text and "rules.example" not in text
    assert "N" in report.kinds
    coded = {
        "resourceType": "Condition",
        "id": "c",
        "code": {"coding": [{"system": "http://x", "code": "1", "display": "seen at 192.168.0.7 via www.a.example"}]},
    }
    _, report, text = deid(harbor, coded)
    assert "192.168" not in text and "www.a" not in text
    assert {"O", "N"} <= report.kinds


def test_p_q_photos_and_images_removed(harbor: SafeHarbor) -> None:
    res = patient(photo=[{"contentType": "image/jpeg", "data": "/9j/4AAQSkZJRg=="}])
    out, report, text = deid(harbor, res)
    assert "photo" not in out and "4AAQ" not in text
    assert report.removed["Patient.photo"] == {"Q"}
    media = {
        "resourceType": "Media",
        "id": "m",
        "status": "completed",
        "content": {"contentType": "image/png", "data": "iVBORw0KGgo=", "url": "http://x/face.png"},
    }
    out, report, _ = deid(harbor, media)
    assert "content" not in out and "Q" in report.kinds


def test_free_text_removed_and_attachment_reduced(harbor: SafeHarbor) -> None:
    doc = {
        "resourceType": "DocumentReference",
        "id": "n1",
        "status": "current",
        "text": {"status": "generated", "div": "<div>Rosalind</div>"},
        "description": "Progress note for Rosalind",
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "data": "UGF0aWVudDogUm9zYWxpbmQ=",
                    "url": "http://files.example.org/n1",
                    "title": "Note 2023-01-16",
                    "creation": "2023-01-16T14:42:00-06:00",
                    "size": 20,
                }
            }
        ],
    }
    out, report, text = deid(harbor, doc)
    assert out["content"] == [{"attachment": {"contentType": "text/plain", "size": 20, "creation": "2023"}}]
    assert "Rosalind" not in text and "text" not in out and "description" not in out
    obs = {"resourceType": "Observation", "id": "o", "status": "final", "note": [{"text": "plate ABC-1234"}]}
    out, report, text = deid(harbor, obs)
    assert "ABC-1234" not in text and report.removed["Observation.note"] == {"R"}


def test_clinical_content_kept(harbor: SafeHarbor) -> None:
    obs = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "category": [{"coding": [{"system": "http://c", "code": "vital-signs", "display": "Vital Signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}], "text": "Systolic blood pressure"},
        "valueQuantity": {"value": 101, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
        "meta": {"security": [{"system": "http://s", "code": "R"}], "tag": [{"code": "t"}], "source": "#abc"},
    }
    out, _, _ = deid(harbor, obs)
    for key in ("status", "category", "code", "valueQuantity"):
        assert out[key] == obs[key]
    assert out["meta"]["security"] == [{"system": "http://s", "code": "R"}, PSEUDED]
    assert out["meta"]["tag"] == [{"code": "t"}] and "source" not in out["meta"]


def test_uncoded_text_and_unknown_elements_removed(harbor: SafeHarbor) -> None:
    res = {
        "resourceType": "Condition",
        "id": "c",
        "code": {"text": "fell off Rosalind's tractor"},
        "madeUpElement": "secret",
        "_recordedDate": {"extension": [{"url": "http://x", "valueString": "secret2"}]},
    }
    out, report, text = deid(harbor, res)
    assert "tractor" not in text and "secret" not in text and "code" not in out
    assert "Condition.madeUpElement" in report.paths


def test_unknown_resource_type_fails_closed(harbor: SafeHarbor) -> None:
    out, _, text = deid(harbor, {"resourceType": "MadeUpThing", "id": "x1", "name": "Rosalind", "ssn": "1"})
    assert out["resourceType"] == "MadeUpThing" and set(out) == {"resourceType", "id", "meta"}
    assert "Rosalind" not in text and out["id"] != "x1"


def test_input_not_changed_and_label_optional() -> None:
    res = patient(name=[{"family": "Quintero"}])
    before = orjson.dumps(res)
    out, _ = SafeHarbor(Pseudonymizer(KEY, "a"), today=TODAY, label=False).resource(res)
    assert orjson.dumps(res) == before
    assert "meta" not in out


def test_bad_arguments_raise_invalid_input(harbor: SafeHarbor) -> None:
    with pytest.raises(InvalidInput):
        harbor.resource(["not", "a", "resource"])  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        SafeHarbor(Pseudonymizer(KEY, "a"), today=dt.datetime(2025, 1, 1))
    with pytest.raises(InvalidInput):
        SafeHarbor("pseudo", today=TODAY)  # type: ignore[arg-type]
    assert harbor.resource({"no": "type"})[0] == {}


def test_year_of_accepts_fhir_formats_only() -> None:
    assert year_of("2023") == "2023" and year_of("2023-01") == "2023"
    assert year_of("2023-01-16T14:11:00.123+05:30") == "2023"
    assert year_of("16/01/2023") is None and year_of(2023) is None and year_of("2023-13-01") is None


def test_report_merge_and_dict() -> None:
    a, b = DeidReport(), DeidReport()
    a.remove("Patient.name", "A")
    b.remove("Patient.name", "R")
    b.generalize("Patient.birthDate", "C")
    b.pseudonymized.add("Patient.id")
    merged = a.merge(b)
    assert merged.removed["Patient.name"] == {"A", "R"} and a.removed["Patient.name"] == {"A"}
    assert merged.kinds == {"A", "C", "R"}
    data = merged.as_dict()
    assert data["kinds"] == ["A", "C", "R"] and data["pseudonymized"] == ["Patient.id"]
