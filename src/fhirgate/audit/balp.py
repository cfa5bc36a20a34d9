"""Export audit entries as FHIR R4 AuditEvent resources shaped per IHE Basic Audit Log Patterns (BALP) 1.1.4.

Shapes follow the published BALP profiles (profiles.ihe.net/ITI/BALP, StructureDefinitions Read,
PatientRead, Query, PatientQuery, Create, PatientCreate, Update, PatientUpdate, Delete, PatientDelete):
  * type audit-event-type#rest; subtype restful-interaction#read (Read), #search-type / #search-system
    (Query), #create, #update, #delete, or #operation (a proposal, approval or rejection); action R for
    Read, E for Query, C for Create, U for Update, D for Delete, E for an operation.
  * agents: client, server and user (requestor = true). BALP types the client as DCM#110153 Source Role
    ID and the server as DCM#110152 Destination Role ID in Query, Create and Update (the request flows to
    the server), but the other way round in Read (the data flows to the client); Delete types them
    DCM#110150 Application and provenance-participant-type#custodian. All are followed as published;
    operations take the Query/Create direction. The user is v3-ParticipationType#IRCP (information
    recipient) for reads, queries and operations, #AUT (author) for create/update/delete (BALP's
    DataSources value set: AUT, INF, CST).
  * entity[transaction] (BasicAuditEntityType#XrequestId) carries the request id; entity[query]
    (audit-entity-type#2, object-role#24) the query; entity[data] (object-role#4) each resource read or
    written; entity[patient] (audit-entity-type#1, object-role#1) each patient touched.
Safe writes (fhirgate's own codes, no BALP slice exists for them):
  * the decider (who approved, rejected or confirmed) is one more agent, v3-ParticipationType#VRF
    (verifier: verifies the correctness and appropriateness of the act and takes on accountability),
    who.display = the decider, requestor = true only when the record has no principal (an operator at
    the CLI acted alone);
  * the proposal is one more entity: what.identifier {urn:fhirgate:proposal, id}, type
    audit-entity-type#4 Other, role object-role#20 Job (a unit of work awaiting or given a decision).
    Not type #2 System Object: BALP slices entity[data] (1..1) on type #2, so a second #2 entity on a
    Create/Update/Delete would break the profile it claims.
Deviations, on purpose: the "raw" query in entity[query].query is the cleaned, value-free query (raw
values may be PHI and are never stored); records that failed are exported in the same shape with
outcome 4/8 but claim no BALP profile (the profiles fix outcome to 0); operation records claim none
either (BALP has no profile for them); a record that touched several patients lists them all, and
`to_audit_events(per_patient=True)` splits it into one event per patient as the Patient* profiles require.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Iterator
from typing import IO, Any

import orjson

from fhirgate.audit.chain import AuditEntry, AuditStore
from fhirgate.audit.record import AuditRecord

BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."
DCM = "http://dicom.nema.org/resources/ontology/DCM"
AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
BALP_ENTITY_TYPE = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
NETWORK_TYPE = "http://hl7.org/fhir/network-type"
PROVENANCE_PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
FHIRGATE_INTERACTION = "urn:fhirgate:interaction"
PROPOSAL_SYSTEM = "urn:fhirgate:proposal"
MAX_REFERENCES = 50

# FHIR R4 AuditEvent.outcome (audit-event-outcome): 0 success, 4 minor failure, 8 serious failure.
_OUTCOME = {"success": "0", "denied": "4", "not-found": "4", "invalid": "4", "error": "8"}
# AuditEvent.action (audit-event-action) per record kind; BALP fixes it in each profile.
_ACTION = {"read": "R", "vread": "R", "history": "R", "query": "E"}
_ACTION |= {"create": "C", "update": "U", "delete": "D", "operation": "E"}
# BALP profile per kind: (no patient, exactly one patient). Operations have none.
_PROFILES = {
    "read": ("Read", "PatientRead"),
    "vread": ("Read", "PatientRead"),  # BALP Read covers read and vread of one resource
    "query": ("Query", "PatientQuery"),
    "create": ("Create", "PatientCreate"),
    "update": ("Update", "PatientUpdate"),
    "delete": ("Delete", "PatientDelete"),
}
_WRITES = frozenset({"create", "update", "delete"})
_SOURCE = (DCM, "110153", "Source Role ID")
_DESTINATION = (DCM, "110152", "Destination Role ID")
# (client, server) agent types per kind: BALP Read has the data flow to the client; Query, Create and
# Update have the request flow to the server; Delete (BALP 1.1.x) types them Application and Custodian.
_AGENT_TYPES: dict[str, tuple[tuple[str, str, str], tuple[str, str, str]]] = {
    "read": (_DESTINATION, _SOURCE),
    "vread": (_DESTINATION, _SOURCE),
    "history": (_DESTINATION, _SOURCE),
    "delete": ((DCM, "110150", "Application"), (PROVENANCE_PARTICIPANT, "custodian", "Custodian")),
}


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def _concept(coding: tuple[str, str, str]) -> dict[str, Any]:
    return {"coding": [_coding(*coding)]}


def _purpose(value: str) -> dict[str, Any]:
    """A purpose of use as a CodeableConcept: `system|code`, or a bare v3-ActReason code (TREAT, ETREAT)."""
    system, sep, code = value.rpartition("|")
    return {"coding": [_coding(system if sep else ACT_REASON, code)]}


def _purposes(rec: AuditRecord) -> list[dict[str, Any]]:
    """The token's purposes, the purpose governance ran the request under, and BTG when break-glass was active."""
    codes = list(dict.fromkeys([*rec.purpose_of_use, *([rec.purpose] if rec.purpose else [])]))
    out = [_purpose(p) for p in codes]
    if rec.break_glass:  # v3-ActReason BTG "break the glass": emergency access outside normal policy
        out.append({"coding": [_coding(ACT_REASON, "BTG", "break the glass")]})
    return out


def _network(address: str) -> dict[str, str]:
    try:
        ipaddress.ip_address(address)
        kind = "2"  # IP Address
    except ValueError:
        kind = "5" if "://" in address else "1"  # URI, else Machine Name
    return {"address": address, "type": kind}


def _reference(ref: str) -> dict[str, str]:
    return {"reference": ref}


def profile_name(kind: str, patients: int) -> str | None:
    """The BALP profile a successful record of `kind` touching `patients` patients claims, or None.

    Several patients fit neither Patient* (1..1 patient) nor the plain profiles (not patient-specific).
    """
    names = _PROFILES.get(kind)
    if names is None or patients > 1:
        return None
    return names[1] if patients else names[0]


def _subtype(rec: AuditRecord) -> dict[str, str]:
    """The restful-interaction code: read, search-type/search-system, create, update, delete or operation."""
    if rec.balp_kind == "read":
        return _coding(RESTFUL, "read", "read")
    if rec.balp_kind == "history":  # FHIR R4 restful-interaction#history-instance
        return _coding(RESTFUL, "history-instance", "history-instance")
    if rec.balp_kind != "query":
        return _coding(RESTFUL, rec.balp_kind, rec.balp_kind)
    if rec.query and not rec.query.startswith("?"):
        return _coding(RESTFUL, "search-type", "search type")
    return _coding(RESTFUL, "search-system", "search system")


def to_audit_event(
    entry: AuditEntry, *, server_name: str = "fhirgate", server_address: str | None = None
) -> dict[str, Any]:
    """One FHIR R4 AuditEvent (as a dict) for an audit entry, shaped per the matching BALP profile."""
    rec = entry.record
    patients = [p for p in rec.patients if p]

    event: dict[str, Any] = {"resourceType": "AuditEvent", "id": f"audit-{entry.seq}"}
    profile = profile_name(rec.balp_kind, len(patients)) if rec.outcome == "success" else None
    if profile is not None:
        event["meta"] = {"profile": [BALP + profile]}
    event["type"] = _coding(AUDIT_EVENT_TYPE, "rest", "Restful Operation")
    event["subtype"] = [_subtype(rec), _coding(FHIRGATE_INTERACTION, rec.interaction, rec.name or rec.method)]
    event["action"] = _ACTION[rec.balp_kind]
    event["recorded"] = rec.time
    event["outcome"] = _OUTCOME[rec.outcome]
    if rec.reason:
        event["outcomeDesc"] = rec.reason
    purposes = _purposes(rec)
    if purposes:
        event["purposeOfEvent"] = purposes
    event["agent"] = _agents(rec, server_name, server_address)
    event["source"] = {
        "site": server_name,
        "observer": {"display": server_name},
        "type": [_coding(SOURCE_TYPE, "4", "Application Server")],
    }
    event["entity"] = _entities(entry, patients)
    return event


def _agents(rec: AuditRecord, server_name: str, server_address: str | None) -> list[dict[str, Any]]:
    client_type, server_type = _AGENT_TYPES.get(rec.balp_kind, (_SOURCE, _DESTINATION))
    client: dict[str, Any] = {"type": _concept(client_type), "requestor": False}
    if rec.client_id:
        client["who"] = {"identifier": {"value": rec.client_id}, "display": rec.client_id}
    else:
        client["who"] = {"display": f"{rec.transport} client"}
    if rec.client_address:
        client["network"] = _network(rec.client_address)
    server: dict[str, Any] = {"type": _concept(server_type), "who": {"display": server_name}, "requestor": False}
    if server_address:
        server["network"] = _network(server_address)
    agents = [client, server]
    user = _user(rec)
    if user is not None:
        agents.append(user)
    if rec.decider:
        # The approver: v3-ParticipationType VRF "verifier". The requestor only when no principal asked
        # (an operator at the CLI); otherwise the user above made the request and the decider vouched for it.
        agents.append(
            {
                "type": {"coding": [_coding(PARTICIPATION, "VRF", "verifier")]},
                "who": {"display": rec.decider},
                "requestor": user is None,
            }
        )
    return agents


def _user(rec: AuditRecord) -> dict[str, Any] | None:
    """The user agent from the token's fhirUser/sub, or None when the record names no principal."""
    if not (rec.fhir_user or rec.sub):
        return None
    # BALP Create/Update/Delete type the user from DataSources (AUT, INF, CST); Read/Query as recipient.
    writes = rec.balp_kind in _WRITES
    kind = ("AUT", "author (originator)") if writes else ("IRCP", "information recipient")
    user: dict[str, Any] = {"type": _concept((PARTICIPATION, *kind)), "requestor": True}
    ident: dict[str, str] | None = None
    if rec.sub:
        ident = {"value": rec.sub}
        if rec.issuer:
            ident["system"] = rec.issuer
    if rec.fhir_user:
        user["who"] = _reference(rec.fhir_user)
        if ident is not None and rec.balp_kind == "delete":
            user["who"]["identifier"] = ident  # BALP Delete forbids agent[user].altId
        elif rec.sub:
            user["altId"] = rec.sub
    else:
        user["who"] = {"identifier": ident}
    purposes = _purposes(rec)
    if purposes:
        user["purposeOfUse"] = purposes
    if rec.role:
        user["role"] = [{"text": rec.role}]
    return user


def _entities(entry: AuditEntry, patients: list[str]) -> list[dict[str, Any]]:
    rec = entry.record
    kind = rec.balp_kind
    details = [
        {"type": "mcpMethod", "valueString": rec.method},
        {"type": "argsDigest", "valueString": rec.args_digest},
        {"type": "resultCount", "valueString": str(len(rec.references))},
        {"type": "chainHash", "valueString": entry.hash},
    ]
    if rec.name:
        details.insert(1, {"type": "name", "valueString": rec.name})
    entities: list[dict[str, Any]] = [
        {
            "what": {"identifier": {"value": rec.request_id}},
            "type": _coding(BALP_ENTITY_TYPE, "XrequestId"),
            "detail": details,
        }
    ]
    if kind == "query":
        query = rec.query or rec.name or rec.method
        entities.append(
            {
                "type": _coding(ENTITY_TYPE, "2", "System Object"),
                "role": _coding(OBJECT_ROLE, "24", "Query"),
                "description": query,
                "query": base64.b64encode(query.encode()).decode(),
            }
        )
    if rec.proposal:
        entities.append(
            {
                "what": {"identifier": {"system": PROPOSAL_SYSTEM, "value": rec.proposal}},
                "type": _coding(ENTITY_TYPE, "4", "Other"),
                "role": _coding(OBJECT_ROLE, "20", "Job"),
            }
        )
    patient_refs = {f"Patient/{p}" for p in patients}
    data_refs = [r for r in rec.references if r not in patient_refs][:MAX_REFERENCES]
    if (kind in ("read", "vread", "history") or kind in _WRITES) and not data_refs and rec.references:
        # A Patient read or written: the patient itself is also the data entity BALP requires (1..1).
        data_refs = [rec.references[0]]
    for ref in data_refs:
        entities.append(
            {
                "what": _reference(ref),
                "type": _coding(ENTITY_TYPE, "2", "System Object"),
                "role": _coding(OBJECT_ROLE, "4", "Domain Resource"),
            }
        )
    for pid in patients:
        entities.append(
            {
                "what": _reference(f"Patient/{pid}"),
                "type": _coding(ENTITY_TYPE, "1", "Person"),
                "role": _coding(OBJECT_ROLE, "1", "Patient"),
            }
        )
    return entities


def to_audit_events(
    entry: AuditEntry,
    *,
    server_name: str = "fhirgate",
    server_address: str | None = None,
    per_patient: bool = False,
) -> list[dict[str, Any]]:
    """AuditEvents for an entry; with per_patient, one per patient touched (BALP Patient* profiles: 1..1)."""
    event = to_audit_event(entry, server_name=server_name, server_address=server_address)
    patients = [p for p in entry.record.patients if p]
    if not per_patient or len(patients) < 2:
        return [event]
    events = []
    profile = profile_name(entry.record.balp_kind, 1) if entry.record.outcome == "success" else None
    for i, pid in enumerate(patients, start=1):
        split = orjson.loads(orjson.dumps(event))
        split["id"] = f"audit-{entry.seq}-{i}"
        keep = f"Patient/{pid}"
        split["entity"] = [
            e for e in split["entity"] if e.get("role", {}).get("code") != "1" or e["what"]["reference"] == keep
        ]
        if profile is not None:
            split["meta"] = {"profile": [BALP + profile]}
        events.append(split)
    return events


def iter_audit_events(
    log: AuditStore, *, since_seq: int = 0, per_patient: bool = False, **kwargs: Any
) -> Iterator[dict[str, Any]]:
    """AuditEvents for every entry after since_seq, oldest first."""
    for entry in log.iter(since_seq):
        yield from to_audit_events(entry, per_patient=per_patient, **kwargs)


def export_fhir(
    log: AuditStore,
    out: IO[bytes],
    *,
    since_seq: int = 0,
    bundle: bool = False,
    per_patient: bool = False,
    server_name: str = "fhirgate",
    server_address: str | None = None,
) -> int:
    """Write AuditEvents as NDJSON (one per line) or, with bundle=True, one collection Bundle; returns count."""
    events = iter_audit_events(
        log, since_seq=since_seq, per_patient=per_patient, server_name=server_name, server_address=server_address
    )
    count = 0
    if not bundle:
        for event in events:
            out.write(orjson.dumps(event) + b"\n")
            count += 1
        return count
    out.write(b'{"resourceType":"Bundle","type":"collection"')
    for event in events:
        out.write((b"," if count else b',"entry":[') + orjson.dumps({"resource": event}))
        count += 1
    out.write(b"]}\n" if count else b"}\n")  # FHIR forbids an empty array
    return count
