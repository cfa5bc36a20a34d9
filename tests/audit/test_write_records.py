"""Audit records of safe writes: new BALP kinds, proposal/decider fields, BALP export, operator records.

Old records must hash exactly as before (the fields are left out of the canonical JSON when unset), and
each kind exports as its IHE BALP 1.1.x profile (Create, Update, Delete; operations claim none).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from audit_helpers import CHAIN_KEY, make_record
from fhir.resources.R4B.auditevent import AuditEvent

from fhirgate.audit.balp import BALP, to_audit_event, to_audit_events
from fhirgate.audit.disclosures import audit_events, disclosures
from fhirgate.audit.log import AuditEntry, AuditLog
from fhirgate.audit.record import BALP_KINDS, AuditRecord
from fhirgate.audit.verify import verify
from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.scopes import ScopeSet
from fhirgate.errors import AuditError, InvalidInput
from fhirgate.service.auditing import AuditWriter, Trail, run_audited
from fhirgate.service.context import RequestContext

DCM = "http://dicom.nema.org/resources/ontology/DCM"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
PROPOSAL = "prop-0123abcd4567ef89"
PRINCIPAL = Principal(
    sub="user-1",
    issuer="https://idp.example",
    scopes=ScopeSet.of("user/*.rs"),
    client_id="claude-desktop",
    fhir_user="Practitioner/pr1",
    purpose_of_use=("TREAT",),
)

# Canonical JSON of records built by AuditRecord before the proposal/decider fields existed (git HEAD
# at the time): they must keep these exact bytes, or every chained hash would change.
READ_KW: dict[str, Any] = {
    "request_id": "req-7",
    "transport": "http",
    "method": "tools/call",
    "name": "read_resource",
    "interaction": "read",
    "balp_kind": "read",
    "outcome": "success",
    "principal": PRINCIPAL,
    "arguments": {"resource_type": "Observation", "id": "o1"},
    "patients": ["p1"],
    "references": ["Observation/o1"],
    "latency_ms": 2.25,
    "client_address": "192.0.2.7",
    "time": "2025-06-30T12:00:00.000Z",
}
GOLDEN_READ = (
    b'{"args_digest":"39154db49da9866f316d1c5653b401bd3641035628123293b408bb68faec0f48","balp_kind":"read",'
    b'"client_address":"192.0.2.7","client_id":"claude-desktop","fhir_user":"Practitioner/pr1",'
    b'"interaction":"read","issuer":"https://idp.example","latency_ms":2.25,"method":"tools/call",'
    b'"name":"read_resource","outcome":"success","patient_context":null,"patients":["p1"],'
    b'"purpose_of_use":["TREAT"],"query":null,"reason":null,"references":["Observation/o1"],'
    b'"request_id":"req-7","scopes":["user/*.rs"],"sub":"user-1","time":"2025-06-30T12:00:00.000Z",'
    b'"transport":"http"}'
)
GOLDEN_GOVERNED = (
    b'{"args_digest":"39154db49da9866f316d1c5653b401bd3641035628123293b408bb68faec0f48","balp_kind":"read",'
    b'"break_glass":true,"client_address":"192.0.2.7","client_id":"claude-desktop",'
    b'"fhir_user":"Practitioner/pr1","interaction":"read","issuer":"https://idp.example","latency_ms":2.25,'
    b'"method":"tools/call","name":"read_resource","outcome":"success","patient_context":null,'
    b'"patients":["p1"],"purpose":"TREAT","purpose_of_use":["TREAT"],"query":null,"reason":null,'
    b'"references":["Observation/o1"],"request_id":"req-7","role":"clinician","scopes":["user/*.rs"],'
    b'"sub":"user-1","time":"2025-06-30T12:00:00.000Z","transport":"http"}'
)


def write_record(kind: str = "update", **overrides: Any) -> AuditRecord:
    """A successful write-path record by PRINCIPAL on Appointment/a1 of patient p1."""
    params: dict[str, Any] = {
        "interaction": f"appointment.{kind}",
        "balp_kind": kind,
        "name": "book_appointment",
        "resource_type": "Appointment",
        "query_params": None,
        "principal": PRINCIPAL,
        "client_address": "192.0.2.7",
        "patients": ["p1"],
        "references": ["Appointment/a1"],
        "proposal": PROPOSAL,
    }
    params.update(overrides)
    return make_record(**params)


def event_for(rec: AuditRecord, seq: int = 1) -> dict[str, Any]:
    event = to_audit_event(AuditEntry(seq, "00" * 32, "11" * 32, rec), server_address="https://fg.example/mcp")
    AuditEvent.model_validate(event)  # a valid R4 AuditEvent
    return event


def agent_codes(event: dict[str, Any]) -> list[str]:
    return [a["type"]["coding"][0]["code"] for a in event["agent"]]


def agent(event: dict[str, Any], code: str) -> dict[str, Any]:
    (found,) = [a for a in event["agent"] if a["type"]["coding"][0]["code"] == code]
    return found


def entities(event: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [e for e in event["entity"] if e.get("role", {}).get("code") == role]


# -- the record ------------------------------------------------------------------------------------


def test_kinds() -> None:
    assert {"read", "vread", "history", "query", "create", "update", "delete", "operation"} == BALP_KINDS


def test_records_without_the_new_fields_keep_their_exact_bytes() -> None:
    assert AuditRecord.new(**READ_KW).to_json() == GOLDEN_READ
    governed = AuditRecord.new(**READ_KW, role="clinician", purpose="TREAT", break_glass=True)
    assert governed.to_json() == GOLDEN_GOVERNED
    # Stored old rows parse, and re-serialize byte for byte (what verification recomputes).
    for golden in (GOLDEN_READ, GOLDEN_GOVERNED):
        parsed = AuditRecord.from_row(golden)
        assert parsed.proposal is None
        assert parsed.decider is None
        assert parsed.to_json() == golden


def test_new_fields_are_canonical_and_round_trip() -> None:
    rec = AuditRecord.new(**{**READ_KW, "balp_kind": "update"}, proposal=PROPOSAL, decider="https://idp.example#u2")
    data = orjson.loads(rec.to_json())
    assert data["proposal"] == PROPOSAL
    assert data["decider"] == "https://idp.example#u2"
    assert list(data) == sorted(data)
    assert AuditRecord.from_row(rec.to_json()) == rec
    assert AuditRecord.from_row(rec.to_json().decode()).to_json() == rec.to_json()
    only_proposal = AuditRecord.new(**READ_KW, proposal=PROPOSAL)
    assert "decider" not in orjson.loads(only_proposal.to_json())
    assert only_proposal.to_json() != GOLDEN_READ


@pytest.mark.parametrize("field", ["proposal", "decider"])
@pytest.mark.parametrize(
    "bad", ["", "x" * 401, "Dr Who\nforged line", "tab\there", "esc\x1b[2J", "nel\x85", "ls\u2028", 7]
)
def test_new_fields_are_validated(field: str, bad: object) -> None:
    with pytest.raises(InvalidInput) as info:
        make_record(**{field: bad})
    assert info.value.param == field


def test_new_fields_accept_names_and_subject_keys() -> None:
    rec = make_record(proposal=PROPOSAL, decider="Dr. Anna-Lena Østergård")
    assert rec.decider == "Dr. Anna-Lena Østergård"
    assert make_record(decider="x" * 400).decider == "x" * 400


def test_from_row_rejects_a_bad_new_field() -> None:
    data = orjson.loads(make_record(proposal=PROPOSAL).to_json())
    data["decider"] = "a\nb"
    with pytest.raises(AuditError, match="decider"):
        AuditRecord.from_row(orjson.dumps(data))


# -- BALP export -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "action", "plain", "patient"),
    [
        ("create", "C", "Create", "PatientCreate"),
        ("update", "U", "Update", "PatientUpdate"),
        ("delete", "D", "Delete", "PatientDelete"),
    ],
)
def test_write_kinds_follow_their_balp_profiles(kind: str, action: str, plain: str, patient: str) -> None:
    event = event_for(write_record(kind))
    assert event["meta"]["profile"] == [BALP + patient]
    assert event["action"] == action
    assert event["type"]["code"] == "rest"
    assert event["subtype"][0] == {"system": RESTFUL, "code": kind, "display": kind}
    assert event["subtype"][1]["system"] == "urn:fhirgate:interaction"
    assert event["subtype"][1]["code"] == f"appointment.{kind}"
    assert [e["what"]["reference"] for e in entities(event, "4")] == ["Appointment/a1"]
    assert [e["what"]["reference"] for e in entities(event, "1")] == ["Patient/p1"]
    assert entities(event, "24") == []  # no query entity: not a search
    no_patient = event_for(write_record(kind, patients=[], references=["Practitioner/pr9"]))
    assert no_patient["meta"]["profile"] == [BALP + plain]


def test_create_and_update_agents_send_data_to_the_server() -> None:
    # BALP Create/Update: client DCM#110153 Source Role ID, server DCM#110152 Destination Role ID; the user
    # from DataSources (AUT, INF, CST), requestor.
    for kind in ("create", "update"):
        event = event_for(write_record(kind))
        assert agent_codes(event) == ["110153", "110152", "AUT"]
        assert agent(event, "110153")["who"]["identifier"]["value"] == "claude-desktop"
        assert agent(event, "110153")["network"] == {"address": "192.0.2.7", "type": "2"}
        assert agent(event, "110152")["who"]["display"] == "fhirgate"
        user = agent(event, "AUT")
        assert user["requestor"] is True
        assert user["who"] == {"reference": "Practitioner/pr1"}
        assert user["altId"] == "user-1"


def test_delete_agents_are_application_and_custodian() -> None:
    event = event_for(write_record("delete"))
    client, server, user = event["agent"]
    assert client["type"]["coding"][0] == {"system": DCM, "code": "110150", "display": "Application"}
    assert server["type"]["coding"][0]["system"] == "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
    assert server["type"]["coding"][0]["code"] == "custodian"
    assert user["type"]["coding"][0]["code"] == "AUT"
    assert "altId" not in user  # BALP Delete: agent[user].altId 0..0
    assert user["who"]["identifier"] == {"value": "user-1", "system": "https://idp.example"}


def test_operation_claims_no_profile() -> None:
    event = event_for(write_record("operation", interaction="proposal.create", references=["Appointment/a1"]))
    assert "meta" not in event
    assert event["action"] == "E"
    assert event["subtype"][0] == {"system": RESTFUL, "code": "operation", "display": "operation"}
    assert agent_codes(event) == ["110153", "110152", "IRCP"]  # the client gets a diff back
    assert [e["what"]["reference"] for e in entities(event, "4")] == ["Appointment/a1"]


def test_proposal_entity() -> None:
    event = event_for(write_record("update"))
    (job,) = entities(event, "20")
    assert job["what"] == {"identifier": {"system": "urn:fhirgate:proposal", "value": PROPOSAL}}
    assert job["type"]["code"] == "4"
    assert job["role"]["system"] == "http://terminology.hl7.org/CodeSystem/object-role"
    # Only one System Object: BALP's entity[data] slice (1..1) is on audit-entity-type#2.
    assert [e for e in event["entity"] if e["type"]["code"] == "2"] == entities(event, "4")
    assert entities(event_for(write_record("update", proposal=None)), "20") == []


def test_decider_agent_with_a_principal_is_not_the_requestor() -> None:
    event = event_for(write_record("update", decider="https://idp.example#boss"))
    decider = agent(event, "VRF")
    assert decider["type"]["coding"][0] == {"system": PARTICIPATION, "code": "VRF", "display": "verifier"}
    assert decider["who"] == {"display": "https://idp.example#boss"}
    assert decider["requestor"] is False
    assert agent(event, "AUT")["requestor"] is True
    assert "VRF" not in agent_codes(event_for(write_record("update")))


def test_decider_agent_of_an_operator_is_the_requestor() -> None:
    rec = write_record("operation", principal=None, transport="cli", method="cli", decider="Dr Jane Smith")
    event = event_for(rec)
    assert agent_codes(event) == ["110153", "110152", "VRF"]
    assert agent(event, "VRF")["requestor"] is True
    assert agent(event, "110153")["who"] == {"display": "cli client"}


def test_writing_a_patient_gives_data_and_patient_entities() -> None:
    event = event_for(write_record("update", references=["Patient/p1"]))
    assert event["meta"]["profile"] == [BALP + "PatientUpdate"]
    assert [e["what"]["reference"] for e in entities(event, "4")] == ["Patient/p1"]
    assert [e["what"]["reference"] for e in entities(event, "1")] == ["Patient/p1"]


def test_failed_write_claims_no_profile() -> None:
    event = event_for(write_record("create", outcome="denied", reason="scope.denied"))
    assert "meta" not in event
    assert event["outcome"] == "4"
    assert event["action"] == "C"


def test_per_patient_split_of_writes() -> None:
    rec = write_record("update", patients=["p1", "p2"], references=["Appointment/a1", "Appointment/a2"])
    assert "meta" not in event_for(rec)  # two patients fit no Patient* profile
    events = to_audit_events(AuditEntry(3, "00" * 32, "11" * 32, rec), per_patient=True)
    assert [e["meta"]["profile"] for e in events] == [[BALP + "PatientUpdate"]] * 2
    assert [[p["what"]["reference"] for p in entities(e, "1")] for e in events] == [["Patient/p1"], ["Patient/p2"]]
    op = write_record("operation", patients=["p1", "p2"])
    assert all("meta" not in e for e in to_audit_events(AuditEntry(4, "00" * 32, "11" * 32, op), per_patient=True))


# -- writing records -------------------------------------------------------------------------------


def test_trail_fields_reach_the_record(log: AuditLog) -> None:
    writer = AuditWriter(log)
    ctx = RequestContext(PRINCIPAL, name="confirm_write")
    trail = Trail("proposal.confirm", balp_kind="update", resource_type="Appointment")
    trail.touch("Appointment/a1", ["p1"])
    trail.proposal = PROPOSAL
    trail.decider = "https://idp.example#user-1"
    assert run_audited(writer, ctx, trail, lambda: "ok") == "ok"
    (entry,) = log.iter()
    assert entry.record.balp_kind == "update"
    assert entry.record.proposal == PROPOSAL
    assert entry.record.decider == "https://idp.example#user-1"
    assert entry.record.sub == "user-1"
    assert verify(log).ok


def test_write_operator_appends_a_verifiable_chained_record(audit_path: Path) -> None:
    with AuditLog(audit_path, chain_key=CHAIN_KEY) as log:
        log.append(make_record(0))
        writer = AuditWriter(log)
        writer.write_operator(
            request_id="cli-approve-1",
            interaction="approvals.approve",
            balp_kind="operation",
            outcome="success",
            decider="Dr Jane Smith",
            proposal=PROPOSAL,
            resource_type="Appointment",
            patients=["p1", "p1"],
            references=["Appointment/a1"],
            arguments={"proposal": PROPOSAL, "note": "Zebulon called to confirm"},
            latency_ms=3.5,
        )
        writer.write_operator(
            request_id="cli-reject-1",
            interaction="approvals.reject",
            balp_kind="operation",
            outcome="success",
            decider="Dr Jane Smith",
            proposal="prop-ffff",
            reason="duplicate",
        )
        log.append(make_record(3))
        entries = list(log.iter())
    assert [e.seq for e in entries] == [1, 2, 3, 4]
    rec = entries[1].record
    assert (rec.transport, rec.method, rec.name, rec.interaction) == ("cli", "cli", *(["approvals.approve"] * 2))
    assert (rec.sub, rec.client_id, rec.fhir_user, rec.scopes) == (None, None, None, ())
    assert (rec.proposal, rec.decider, rec.balp_kind) == (PROPOSAL, "Dr Jane Smith", "operation")
    assert rec.patients == ("p1",)
    assert rec.query == "Appointment"
    assert rec.latency_ms == 3.5
    assert b"Zebulon" not in rec.to_json()  # arguments are digested, never kept
    assert entries[2].record.reason == "duplicate"
    with AuditLog(audit_path, chain_key=CHAIN_KEY) as reopened:
        report = verify(reopened)
        assert report.ok, report.problems


@pytest.mark.parametrize(
    "bad",
    [{"decider": "two\nlines"}, {"balp_kind": "patch"}, {"outcome": "maybe"}, {"proposal": ""}],
)
def test_write_operator_refuses_bad_records_with_audit_error(log: AuditLog, bad: dict[str, Any]) -> None:
    params: dict[str, Any] = {
        "request_id": "cli-1",
        "interaction": "approvals.approve",
        "balp_kind": "operation",
        "outcome": "success",
        "decider": "Dr Jane Smith",
        "proposal": PROPOSAL,
    }
    params.update(bad)
    with pytest.raises(AuditError):
        AuditWriter(log).write_operator(**params)
    assert list(log.iter()) == []


# -- accounting of disclosures ---------------------------------------------------------------------


def test_write_records_are_accounted(log: AuditLog) -> None:
    """A proposal or confirmation showed the client a readable diff of the record: it stays in the accounting."""
    log.append(write_record("operation", interaction="proposal.create", decider=None))
    log.append(write_record("update", decider="https://idp.example#boss"))
    listed = disclosures(log, "p1")
    assert [d.seq for d in listed] == [1, 2]
    assert listed[0].description == "book_appointment (proposal.create); resource types: Appointment"
    assert listed[1].resource_types == ("Appointment",)
    events = audit_events(log, "p1")
    assert [e["action"] for e in events] == ["E", "U"]
    for event in events:
        AuditEvent.model_validate(event)
        assert entities(event, "20")[0]["what"]["identifier"]["value"] == PROPOSAL  # kept: not a reference
