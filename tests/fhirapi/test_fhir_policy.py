"""The FHIR API under policy, tried from the caller's side: a patient's token cannot reach another patient by any
interaction, scopes and roles refuse with 403 and the reason, projections arrive SUBSETTED, opted-out patients
are invisible, de-identified roles get no records; every refusal leaves exactly one audit record."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhirapi_support import Api, patients_in

from fhirgate.core.policy.labels import ACTCODE_SYSTEM as LABELS
from fhirgate.store.factory import open_store

SUBSETTED = ("http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "SUBSETTED")


def _resources(body: dict[str, Any]) -> list[dict[str, Any]]:
    if body.get("resourceType") != "Bundle":
        return [body]
    out: list[dict[str, Any]] = []
    for entry in body.get("entry", []):
        if "resource" in entry:
            out += _resources(entry["resource"])
    return out


def _patients(body: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for res in _resources(body):
        patients_in(res, found)
        if res.get("resourceType") == "Patient":
            found.add(res["id"])
    return found


@pytest.fixture(scope="module")
def own(api: Api) -> str:
    return api.token("patient/*.rs launch/patient", patient=api.facts.patient_a, subject="patient-a")


def _b_paths(api: Api) -> list[str]:
    b = api.facts.patient_b
    return [
        f"Patient/{b}",
        f"Patient/{b}/_history",
        f"Patient/{b}/_history/1",
        f"Patient/{b}/$everything",
        f"Observation?patient={b}",
        f"Observation?subject=Patient/{b}&_include=Observation:subject",
        f"Patient?_id={b}&_revinclude=Observation:patient",
        f"Encounter?patient.name=x&patient={b}",
        f"Condition?_id={api.facts.versioned.split('/')[1]}",
    ]


def test_patient_token_reaches_only_its_own_record(api: Api, own: str) -> None:
    a = api.facts.patient_a
    for path in _b_paths(api):
        before = api.count()
        resp = api.get(path, own)
        assert resp.status_code in (200, 403, 404), (path, resp.text)
        if resp.status_code == 200:
            body = resp.json()
            assert _patients(body) <= {a}, path
        assert len(api.since(before)) == 1, path
    mine = api.get("Observation?_count=100", own).json()
    assert mine["entry"] and _patients(mine) == {a}
    revinc = api.get("Patient?_revinclude=Observation:patient&_count=100", own).json()
    Bundle.model_validate(revinc)
    assert _patients(revinc) == {a}


def test_patient_token_other_patient_reads_look_absent_and_are_recorded_denied(api: Api, own: str) -> None:
    b = api.facts.patient_b
    before = api.count()
    resp = api.get(f"Patient/{b}", own)
    assert resp.status_code == 404
    assert resp.json()["issue"][0]["diagnostics"] == f"Patient/{b} was not found"
    [rec] = api.since(before)
    assert rec.outcome == "denied"  # masked for the caller, not for the audit trail
    for path in (f"Patient/{b}/_history/1", f"Patient/{b}/_history", f"Patient/{b}/$everything"):
        assert api.get(path, own).status_code == 404


def test_patient_token_in_batch_entries(api: Api, own: str) -> None:
    a, b = api.facts.patient_a, api.facts.patient_b
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": f"Patient/{a}"}},
            {"request": {"method": "GET", "url": f"Patient/{b}"}},
            {"request": {"method": "GET", "url": f"Observation?patient={b}"}},
            {"request": {"method": "GET", "url": f"Patient/{b}/$everything"}},
            {"request": {"method": "GET", "url": "Observation?bogus=1"}},
            {"request": {"method": "DELETE", "url": f"Patient/{a}"}},
        ],
    }
    before = api.count()
    resp = api.post("", own, batch)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    Bundle.model_validate(body)
    assert body["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in body["entry"]]
    assert statuses[0] == "200 OK" and statuses[1] == "404 Not Found" and statuses[3] == "404 Not Found"
    assert statuses[4] == "400 Bad Request" and statuses[5] == "405 Method Not Allowed"
    assert _patients(body) <= {a}
    records = api.since(before)
    assert len(records) == len(batch["entry"])  # one record per entry, none for the envelope
    assert [r.outcome for r in records] == ["success", "denied", "success", "denied", "invalid", "invalid"]
    assert len({r.request_id for r in records}) == len(records)


def test_missing_type_scope_is_403_with_the_reason(api: Api) -> None:
    token = api.token("user/Patient.rs")
    before = api.count()
    for path in ("Observation?_count=1", f"{api.facts.versioned}", f"{api.facts.versioned}/_history"):
        resp = api.get(path, token)
        assert resp.status_code == 403, resp.text
        issue = resp.json()["issue"][0]
        assert issue["code"] == "forbidden" and issue["details"]["coding"][0]["code"]
        assert "Condition" in issue["diagnostics"] or "Observation" in issue["diagnostics"]
    records = api.since(before)
    assert [r.outcome for r in records] == ["denied"] * 3 and all(r.reason for r in records)
    assert api.get(f"Patient/{api.facts.patient_a}", token).status_code == 200


def test_read_only_scope_cannot_search(api: Api) -> None:
    resp = api.get("Patient?_count=1", api.token("user/Patient.r"))
    assert resp.status_code == 403
    assert api.get(f"Patient/{api.facts.patient_a}", api.token("user/Patient.r")).status_code == 200


def _subsetted(resource: dict[str, Any]) -> bool:
    return any((s.get("system"), s.get("code")) == SUBSETTED for s in resource["meta"].get("security", []))


def test_front_desk_gets_projected_resources_marked_subsetted(api: Api) -> None:
    token = api.token(role="front_desk", subject="desk")
    appt_id = api.facts.appointment_with_reason
    appt = api.get(f"Appointment/{appt_id}", token).json()
    assert "reasonCode" not in appt and "start" in appt
    assert _subsetted(appt)
    searched = api.get(f"Appointment?_id={appt_id}", token).json()
    [found] = _resources(searched)
    assert "reasonCode" not in found and _subsetted(found)
    versions = api.get(f"Appointment/{appt_id}/_history", token).json()
    assert all("reasonCode" not in r and _subsetted(r) for r in _resources(versions))
    patient = api.get(f"Patient/{api.facts.patient_a}", token).json()
    assert set(patient) <= {
        "resourceType", "id", "meta", "identifier", "active", "name", "telecom", "gender", "birthDate", "address",
        "contact", "communication", "generalPractitioner", "managingOrganization",
    }  # fmt: skip
    assert _subsetted(patient)
    full = api.get(f"Appointment/{appt_id}", api.token()).json()
    assert "reasonCode" in full and not _subsetted(full)


def test_front_desk_has_no_clinical_types_and_no_everything(api: Api) -> None:
    token = api.token(role="front_desk", subject="desk")
    before = api.count()
    assert api.get("Observation?_count=1", token).status_code == 403
    assert api.get(f"Patient/{api.facts.patient_a}/$everything", token).status_code == 403
    assert [r.outcome for r in api.since(before)] == ["denied", "denied"]


def test_elements_parameter_marks_subsetted(api: Api) -> None:
    body = api.get(f"Patient?_id={api.facts.patient_a}&_elements=gender", api.token()).json()
    [patient] = _resources(body)
    assert "name" not in patient and patient["gender"] and _subsetted(patient)


def test_opted_out_patient_is_invisible_to_practice_staff(api: Api) -> None:
    token = api.token()  # no role claim: practice_staff
    for pid in api.facts.optouts:
        assert api.get(f"Patient/{pid}", token).status_code == 404
        assert api.get(f"Patient/{pid}/$everything", token).status_code == 404
        assert api.get(f"Patient/{pid}/_history", token).status_code == 404
        assert not _resources(api.get(f"Patient?_id={pid}", token).json())
        assert not _resources(api.get(f"Observation?patient={pid}", token).json())
    everyone = api.get("Patient?_count=100", token).json()
    assert not ({r["id"] for r in _resources(everyone)} & api.facts.optouts)


def test_deidentified_role_gets_no_identified_records(api: Api) -> None:
    token = api.token(role="analyst", subject="analyst")
    for path in (f"Patient/{api.facts.patient_a}", "Observation?_count=1", f"{api.facts.versioned}/_history/1"):
        resp = api.get(path, token)
        assert resp.status_code == 403
        reason = resp.json()["issue"][0]["details"]["coding"][0]["code"]
        assert reason in ("role.tool_not_allowed", "deid.tool_not_deidentified")  # its tools, then de-identification


def test_a_label_added_later_withholds_every_version_and_the_history(api: Api) -> None:
    """A Condition written unlabelled, then labelled PSY: practice_staff (sensitive labels withheld) must not get
    the old unlabelled version by vread (nor in a batch), the history, or the resource by search."""
    store = open_store(api.data_dir, create=False)
    try:
        body = {
            "resourceType": "Condition",
            "id": "later-labelled",
            "subject": {"reference": f"Patient/{api.facts.patient_b}"},
            "code": {"text": "Follow-up"},
        }
        store.write([body])
        store.write([{**body, "meta": {"security": [{"system": LABELS, "code": "PSY"}]}}])
    finally:
        store.close()
    token = api.token()  # practice_staff: sensitive labels withheld
    for path in (
        "Condition/later-labelled",
        "Condition/later-labelled/_history/1",
        "Condition/later-labelled/_history/2",
        "Condition/later-labelled/_history",
    ):
        assert api.get(path, token).status_code == 404, path
    found = api.get("Condition?_id=later-labelled", token).json()
    assert not _resources(found)
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": "Condition/later-labelled/_history/1"}}],
    }
    entry = api.post("", token, batch).json()["entry"][0]
    assert entry["response"]["status"].startswith("404")
    # Control: the patient's own access (right of access covers PSY) reads both versions, so the 404s above
    # come from the label and not from a missing resource.
    own = api.token("patient/*.rs launch/patient", patient=api.facts.patient_b, subject="patient-b")
    assert api.get("Condition/later-labelled/_history/1", own).status_code == 200
    assert api.get("Condition/later-labelled", own).status_code == 200
