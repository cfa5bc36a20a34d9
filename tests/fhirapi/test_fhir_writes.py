"""Writes through the FHIR API: refused with 403 when writes are off (nothing stored), else turned into proposals
a person approves (202, nothing written); a transaction is validated as a whole before any proposal is made."""

from __future__ import annotations

import copy
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhirapi_support import Api

from fhirgate.store.factory import open_store
from fhirgate.writes.approvals import open_proposals


def _new_appointment(api: Api) -> dict[str, Any]:
    body = copy.deepcopy(api.facts.appointment_body)
    body.pop("id")
    body.pop("meta", None)
    return body


def _count(api: Api, rtype: str) -> int:
    store = open_store(api.data_dir, create=False)
    try:
        return store.counts().get(rtype, 0)
    finally:
        store.close()


def _proposals(api: Api) -> list[Any]:
    proposals = open_proposals(api.data_dir)
    try:
        return proposals.list(limit=1000)
    finally:
        proposals.close()


def test_writes_disabled_is_403_and_nothing_stored(api: Api) -> None:
    token = api.token("user/*.cruds")
    stored = _count(api, "Appointment")
    before = api.count()
    resp = api.post("Appointment", token, _new_appointment(api))
    assert resp.status_code == 403, resp.text
    assert resp.json()["issue"][0]["details"]["coding"][0]["code"] == "writes.disabled"
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "POST", "url": "Appointment"}, "resource": _new_appointment(api)}],
    }
    assert api.post("", token, transaction).status_code == 403
    batch = {**transaction, "type": "batch"}
    body = api.post("", token, batch).json()
    assert body["entry"][0]["response"]["status"] == "403 Forbidden"
    assert [r.outcome for r in api.since(before)] == ["denied"] * 3
    assert _count(api, "Appointment") == stored


def test_create_becomes_a_proposal_and_nothing_is_written(api_rw: Api) -> None:
    token = api_rw.token("user/*.cruds", subject="staff-create")
    stored = _count(api_rw, "Appointment")
    before = api_rw.count()
    resp = api_rw.post("Appointment", token, _new_appointment(api_rw))
    assert resp.status_code == 202, resp.text
    body = resp.json()
    OperationOutcome.model_validate(body)
    issue = body["issue"][0]
    pid = issue["details"]["coding"][0]["code"]
    assert issue["severity"] == "information" and f"fhirgate approvals approve {pid}" in issue["diagnostics"]
    assert any(p.id == pid and p.status == "pending" for p in _proposals(api_rw))
    assert _count(api_rw, "Appointment") == stored
    [rec] = api_rw.since(before)
    assert (rec.interaction, rec.proposal, rec.outcome) == ("write.propose", pid, "success")


def test_update_with_if_match_becomes_a_proposal(api_rw: Api) -> None:
    token = api_rw.token("user/*.cruds", subject="staff-update")
    appt_id = api_rw.facts.appointment_with_reason
    read = api_rw.get(f"Appointment/{appt_id}", token)
    resource = read.json()
    resource["comment"] = "please bring your insurance card"
    version = resource["meta"].pop("versionId")
    resp = api_rw.client.put(
        f"/fhir/Appointment/{appt_id}",
        json=resource,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/fhir+json",
            "If-Match": read.headers["etag"],
        },
    )
    assert resp.status_code == 202, resp.text
    current = api_rw.get(f"Appointment/{appt_id}", token).json()
    assert current["meta"]["versionId"] == version and current.get("comment") != resource["comment"]
    mismatch = api_rw.client.put(
        f"/fhir/Appointment/{appt_id}-other",
        json=resource,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"},
    )
    assert mismatch.status_code == 400


def test_transaction_is_all_or_nothing(api_rw: Api) -> None:
    token = api_rw.token("user/*.cruds", subject="staff-tx")
    good = _new_appointment(api_rw)
    bad = _new_appointment(api_rw)
    bad["participant"] = [{"actor": {"reference": "Patient/does-not-exist"}, "status": "accepted"}]
    proposals = len(_proposals(api_rw))
    stored = _count(api_rw, "Appointment")
    before = api_rw.count()
    failing = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "POST", "url": "Appointment"}, "resource": good},
            {"request": {"method": "POST", "url": "Appointment"}, "resource": bad},
        ],
    }
    resp = api_rw.post("", token, failing)
    assert resp.status_code in (400, 422), resp.text
    assert "entry[1]" in resp.json()["issue"][0]["diagnostics"]
    assert len(_proposals(api_rw)) == proposals  # not even the good entry was proposed
    passing = {**failing, "entry": [failing["entry"][0], failing["entry"][0]]}
    resp = api_rw.post("", token, passing)
    assert resp.status_code == 202, resp.text
    bundle = resp.json()
    Bundle.model_validate(bundle)
    assert bundle["type"] == "transaction-response"
    ids = [e["response"]["outcome"]["issue"][0]["details"]["coding"][0]["code"] for e in bundle["entry"]]
    assert [e["response"]["status"] for e in bundle["entry"]] == ["202 Accepted"] * 2
    assert len(_proposals(api_rw)) == proposals + 2 and len(set(ids)) == 2
    records = api_rw.since(before)
    assert [r.outcome for r in records] == ["invalid", "success"]
    assert records[1].proposal == " ".join(ids)
    assert _count(api_rw, "Appointment") == stored


def test_role_without_the_write_type_and_delete(api_rw: Api) -> None:
    token = api_rw.token("user/*.cruds", role="front_desk", subject="desk-w")
    condition = {"resourceType": "Condition", "subject": {"reference": f"Patient/{api_rw.facts.patient_a}"}}
    assert api_rw.post("Condition", token, condition).status_code == 403
    resp = api_rw.client.delete(
        f"/fhir/Appointment/{api_rw.facts.appointment_with_reason}", headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status_code == 405
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": "Appointment/x"}}],
    }
    assert api_rw.post("", token, transaction).status_code == 405
    cap = api_rw.get("metadata").json()
    patient = next(r for r in cap["rest"][0]["resource"] if r["type"] == "Patient")
    assert {"create", "update"} <= {i["code"] for i in patient["interaction"]}
