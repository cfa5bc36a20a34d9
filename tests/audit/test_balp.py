"""BALP AuditEvent export: profile shapes per IHE BALP 1.1.4, validated with fhir.resources R4B."""

from __future__ import annotations

import base64
import io
from typing import Any

import orjson
import pytest
from audit_helpers import make_record
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle

from fhirgate.audit.balp import BALP, export_fhir, to_audit_event, to_audit_events
from fhirgate.audit.log import AuditEntry, AuditLog
from fhirgate.audit.record import AuditRecord
from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.scopes import ScopeSet

DCM = "http://dicom.nema.org/resources/ontology/DCM"
PRINCIPAL = Principal(
    sub="user-1",
    issuer="https://idp.example",
    scopes=ScopeSet.of("user/*.rs"),
    client_id="claude-desktop",
    fhir_user="Practitioner/pr1",
    purpose_of_use=("TREAT", "urn:oid:2.16.840.1.113883.5.8|HOPERAT"),
)


def event_for(rec: AuditRecord, seq: int = 1, **kwargs: Any) -> dict[str, Any]:
    event = to_audit_event(AuditEntry(seq, "00" * 32, "11" * 32, rec), **kwargs)
    AuditEvent.model_validate(event)  # raises when not a valid R4 AuditEvent
    return event


def agent(event: dict[str, Any], code: str) -> dict[str, Any]:
    (found,) = [a for a in event["agent"] if a["type"]["coding"][0]["code"] == code]
    return found


def entities(event: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [e for e in event["entity"] if e.get("role", {}).get("code") == role]


def read_record(**kw: Any) -> AuditRecord:
    params: dict[str, Any] = {
        "interaction": "read",
        "balp_kind": "read",
        "name": "read",
        "resource_type": None,
        "query_params": None,
        "principal": PRINCIPAL,
        "client_address": "192.0.2.7",
    }
    params.update(kw)
    return make_record(**params)


def test_read_without_patient() -> None:
    event = event_for(
        read_record(patients=[], references=["Practitioner/pr9"]), server_address="https://fg.example/mcp"
    )
    assert event["meta"]["profile"] == [BALP + "Read"]
    assert event["type"] == {
        "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
        "code": "rest",
        "display": "Restful Operation",
    }
    assert event["subtype"][0]["system"] == "http://hl7.org/fhir/restful-interaction"
    assert event["subtype"][0]["code"] == "read"
    assert event["action"] == "R"
    assert event["outcome"] == "0"
    # BALP Read: client is Destination Role ID (110152), server Source Role ID (110153).
    client, server = agent(event, "110152"), agent(event, "110153")
    assert client["who"]["identifier"]["value"] == "claude-desktop"
    assert client["network"] == {"address": "192.0.2.7", "type": "2"}
    assert server["network"]["type"] == "5"
    (data,) = entities(event, "4")
    assert data["what"] == {"reference": "Practitioner/pr9"}
    assert data["type"]["code"] == "2"
    assert entities(event, "1") == []


def test_patient_read() -> None:
    event = event_for(read_record(patients=["p1"], references=["Observation/o1"]))
    assert event["meta"]["profile"] == [BALP + "PatientRead"]
    (patient,) = entities(event, "1")
    assert patient["what"] == {"reference": "Patient/p1"}
    assert patient["type"] == {
        "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
        "code": "1",
        "display": "Person",
    }
    assert patient["role"]["system"] == "http://terminology.hl7.org/CodeSystem/object-role"
    assert [e["what"]["reference"] for e in entities(event, "4")] == ["Observation/o1"]


def test_reading_a_patient_gives_data_and_patient_entities() -> None:
    event = event_for(read_record(patients=["p1"], references=["Patient/p1"]))
    assert [e["what"]["reference"] for e in entities(event, "4")] == ["Patient/p1"]
    assert [e["what"]["reference"] for e in entities(event, "1")] == ["Patient/p1"]


def test_query_without_patient() -> None:
    rec = make_record(
        principal=PRINCIPAL,
        resource_type="Practitioner",
        query_params={"name": "Zebulon"},
        patients=[],
        references=["Practitioner/a", "Practitioner/b"],
    )
    event = event_for(rec)
    assert event["meta"]["profile"] == [BALP + "Query"]
    assert event["action"] == "E"
    assert event["subtype"][0]["code"] == "search-type"
    # BALP Query: client is Source Role ID (110153), server Destination Role ID (110152).
    assert agent(event, "110153")["who"]["display"] == "claude-desktop"
    agent(event, "110152")
    (query,) = entities(event, "24")
    assert query["type"]["code"] == "2"
    assert query["description"] == "Practitioner?name=*"
    assert base64.b64decode(query["query"]).decode() == "Practitioner?name=*"
    assert "what" not in query
    assert b"Zebulon" not in orjson.dumps(event)


def test_patient_query_and_transaction_entity() -> None:
    event = event_for(make_record(5, principal=PRINCIPAL, patients=["p1"]))
    assert event["meta"]["profile"] == [BALP + "PatientQuery"]
    (patient,) = entities(event, "1")
    assert patient["what"]["reference"] == "Patient/p1"
    (txn,) = [e for e in event["entity"] if e["type"]["code"] == "XrequestId"]
    assert txn["type"]["system"] == "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
    assert txn["what"]["identifier"]["value"] == "req-5"


def test_user_agent_and_purpose_of_use() -> None:
    event = event_for(make_record(principal=PRINCIPAL))
    user = agent(event, "IRCP")
    assert user["requestor"] is True
    assert user["type"]["coding"][0]["system"] == "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
    assert user["who"] == {"reference": "Practitioner/pr1"}
    assert user["altId"] == "user-1"
    codes = [(c["coding"][0]["system"], c["coding"][0]["code"]) for c in user["purposeOfUse"]]
    assert codes == [
        ("http://terminology.hl7.org/CodeSystem/v3-ActReason", "TREAT"),
        ("urn:oid:2.16.840.1.113883.5.8", "HOPERAT"),
    ]
    assert event["purposeOfEvent"] == user["purposeOfUse"]
    assert [a["requestor"] for a in event["agent"]] == [False, False, True]


def test_user_without_fhir_user_is_identified_by_issuer_and_sub() -> None:
    principal = Principal(sub="s-9", issuer="https://idp.example", scopes=ScopeSet.of("patient/*.rs"))
    user = agent(event_for(make_record(principal=principal)), "IRCP")
    assert user["who"] == {"identifier": {"system": "https://idp.example", "value": "s-9"}}


def test_unauthenticated_refusal_has_no_user_agent() -> None:
    rec = make_record(method="http", name=None, outcome="denied", reason="token.missing", patients=[], references=[])
    event = event_for(rec)
    assert [a["type"]["coding"][0]["code"] for a in event["agent"]] == ["110153", "110152"]


@pytest.mark.parametrize(("outcome", "code"), [("denied", "4"), ("not-found", "4"), ("invalid", "4"), ("error", "8")])
def test_failures_carry_outcome_and_reason_but_claim_no_profile(outcome: str, code: str) -> None:
    event = event_for(make_record(outcome=outcome, reason="scope.missing", principal=PRINCIPAL))
    assert event["outcome"] == code
    assert event["outcomeDesc"] == "scope.missing"
    assert "meta" not in event


def test_references_are_bounded() -> None:
    refs = [f"Observation/o{i}" for i in range(120)]
    event = event_for(make_record(references=refs, patients=["p1"]))
    assert len(entities(event, "4")) == 50
    (txn,) = [e for e in event["entity"] if e["type"]["code"] == "XrequestId"]
    assert {"type": "resultCount", "valueString": "120"} in txn["detail"]


def test_multi_patient_query_splits_per_patient() -> None:
    entry = AuditEntry(
        3, "00" * 32, "11" * 32, make_record(patients=["p1", "p2"], references=["Patient/p1", "Patient/p2"])
    )
    whole = to_audit_event(entry)
    assert len(entities(whole, "1")) == 2
    assert "meta" not in whole
    split = to_audit_events(entry, per_patient=True)
    assert [e["id"] for e in split] == ["audit-3-1", "audit-3-2"]
    for event, pid in zip(split, ["p1", "p2"], strict=True):
        AuditEvent.model_validate(event)
        assert [e["what"]["reference"] for e in entities(event, "1")] == [f"Patient/{pid}"]
        assert event["meta"]["profile"] == [BALP + "PatientQuery"]


def test_export_ndjson_and_bundle(log: AuditLog) -> None:
    for i in range(4):
        log.append(make_record(i, principal=PRINCIPAL))
    log.append(read_record(patients=["p1"], references=["Condition/c1"]))
    out = io.BytesIO()
    assert export_fhir(log, out) == 5
    lines = out.getvalue().splitlines()
    assert len(lines) == 5
    for line in lines:
        AuditEvent.model_validate(orjson.loads(line))
    out = io.BytesIO()
    assert export_fhir(log, out, since_seq=3) == 2
    assert [orjson.loads(x)["id"] for x in out.getvalue().splitlines()] == ["audit-4", "audit-5"]
    out = io.BytesIO()
    assert export_fhir(log, out, bundle=True) == 5
    bundle = Bundle.model_validate(orjson.loads(out.getvalue()))
    assert bundle.type == "collection"
    assert len(bundle.entry) == 5


def test_export_of_empty_log_is_a_valid_bundle(log: AuditLog) -> None:
    out = io.BytesIO()
    assert export_fhir(log, out, bundle=True) == 0
    Bundle.model_validate(orjson.loads(out.getvalue()))
