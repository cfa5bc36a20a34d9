"""Export audit entries as FHIR R4 AuditEvent resources shaped per IHE Basic Audit Log Patterns (BALP) 1.1.4.

Shapes follow the published BALP profiles (profiles.ihe.net/ITI/BALP, StructureDefinitions Read,
PatientRead, Query, PatientQuery):
  * type audit-event-type#rest; subtype restful-interaction#read (Read) or #search-type /
    #search-system (Query); action R for Read, E for Query.
  * agents: client, server and user (v3-ParticipationType#IRCP, requestor = true). BALP types the
    client as DCM#110153 Source Role ID and the server as DCM#110152 Destination Role ID in Query, but
    the other way round in Read (the data flows to the client); both are followed as published.
  * entity[transaction] (BasicAuditEntityType#XrequestId) carries the request id; entity[query]
    (audit-entity-type#2, object-role#24) the query; entity[data] (object-role#4) the resource read;
    entity[patient] (audit-entity-type#1, object-role#1) each patient touched.
Deviations, on purpose: the "raw" query in entity[query].query is the cleaned, value-free query (raw
values may be PHI and are never stored); records that failed are exported in the same shape with
outcome 4/8 but claim no BALP profile (the profiles fix outcome to 0); a record that touched several
patients lists them all, and `to_audit_events(per_patient=True)` splits it into one event per patient
as PatientQuery requires.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Iterator
from typing import IO, Any

import orjson

from fhirgate.audit.log import AuditEntry, AuditLog

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
FHIRGATE_INTERACTION = "urn:fhirgate:interaction"
MAX_REFERENCES = 50

# FHIR R4 AuditEvent.outcome (audit-event-outcome): 0 success, 4 minor failure, 8 serious failure.
_OUTCOME = {"success": "0", "denied": "4", "not-found": "4", "invalid": "4", "error": "8"}


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def _purpose(value: str) -> dict[str, Any]:
    """A purpose of use as a CodeableConcept: `system|code`, or a bare v3-ActReason code (TREAT, ETREAT)."""
    system, sep, code = value.rpartition("|")
    return {"coding": [_coding(system if sep else ACT_REASON, code)]}


def _purposes(rec: Any) -> list[dict[str, Any]]:
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


def to_audit_event(
    entry: AuditEntry, *, server_name: str = "fhirgate", server_address: str | None = None
) -> dict[str, Any]:
    """One FHIR R4 AuditEvent (as a dict) for an audit entry, shaped per the matching BALP profile."""
    rec = entry.record
    is_read = rec.balp_kind == "read"
    success = rec.outcome == "success"
    patients = [p for p in rec.patients if p]

    event: dict[str, Any] = {"resourceType": "AuditEvent", "id": f"audit-{entry.seq}"}
    if success and len(patients) <= 1:
        # Several patients fit neither Patient* (1..1 patient) nor Read/Query (not patient-specific).
        name = ("PatientRead" if is_read else "PatientQuery") if patients else ("Read" if is_read else "Query")
        event["meta"] = {"profile": [BALP + name]}
    if is_read:
        subtype = _coding(RESTFUL, "read", "read")
    elif rec.query and not rec.query.startswith("?"):
        subtype = _coding(RESTFUL, "search-type", "search type")
    else:
        subtype = _coding(RESTFUL, "search-system", "search system")
    event["type"] = _coding(AUDIT_EVENT_TYPE, "rest", "Restful Operation")
    event["subtype"] = [subtype, _coding(FHIRGATE_INTERACTION, rec.interaction, rec.name or rec.method)]
    event["action"] = "R" if is_read else "E"
    event["recorded"] = rec.time
    event["outcome"] = _OUTCOME[rec.outcome]
    if rec.reason:
        event["outcomeDesc"] = rec.reason
    purposes = _purposes(rec)
    if purposes:
        event["purposeOfEvent"] = purposes
    event["agent"] = _agents(rec, is_read, server_name, server_address)
    event["source"] = {
        "site": server_name,
        "observer": {"display": server_name},
        "type": [_coding(SOURCE_TYPE, "4", "Application Server")],
    }
    event["entity"] = _entities(entry, is_read, patients)
    return event


def _agents(rec: Any, is_read: bool, server_name: str, server_address: str | None) -> list[dict[str, Any]]:
    # BALP Read: client 110152 / server 110153; BALP Query: client 110153 / server 110152.
    client_code, server_code = ("110152", "110153") if is_read else ("110153", "110152")
    names = {"110152": "Destination Role ID", "110153": "Source Role ID"}
    client: dict[str, Any] = {
        "type": {"coding": [_coding(DCM, client_code, names[client_code])]},
        "requestor": False,
    }
    if rec.client_id:
        client["who"] = {"identifier": {"value": rec.client_id}, "display": rec.client_id}
    else:
        client["who"] = {"display": f"{rec.transport} client"}
    if rec.client_address:
        client["network"] = _network(rec.client_address)
    server: dict[str, Any] = {
        "type": {"coding": [_coding(DCM, server_code, names[server_code])]},
        "who": {"display": server_name},
        "requestor": False,
    }
    if server_address:
        server["network"] = _network(server_address)
    agents = [client, server]
    if rec.fhir_user or rec.sub:
        user: dict[str, Any] = {
            "type": {"coding": [_coding(PARTICIPATION, "IRCP", "information recipient")]},
            "requestor": True,
        }
        if rec.fhir_user:
            user["who"] = _reference(rec.fhir_user)
            if rec.sub:
                user["altId"] = rec.sub
        else:
            ident: dict[str, str] = {"value": rec.sub}
            if rec.issuer:
                ident["system"] = rec.issuer
            user["who"] = {"identifier": ident}
        purposes = _purposes(rec)
        if purposes:
            user["purposeOfUse"] = purposes
        if rec.role:
            user["role"] = [{"text": rec.role}]
        agents.append(user)
    return agents


def _entities(entry: AuditEntry, is_read: bool, patients: list[str]) -> list[dict[str, Any]]:
    rec = entry.record
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
    if not is_read:
        query = rec.query or rec.name or rec.method
        entities.append(
            {
                "type": _coding(ENTITY_TYPE, "2", "System Object"),
                "role": _coding(OBJECT_ROLE, "24", "Query"),
                "description": query,
                "query": base64.b64encode(query.encode()).decode(),
            }
        )
    patient_refs = {f"Patient/{p}" for p in patients}
    data_refs = [r for r in rec.references if r not in patient_refs][:MAX_REFERENCES]
    for ref in data_refs:
        entities.append(
            {
                "what": _reference(ref),
                "type": _coding(ENTITY_TYPE, "2", "System Object"),
                "role": _coding(OBJECT_ROLE, "4", "Domain Resource"),
            }
        )
    if is_read and not data_refs and rec.references:
        # A Patient read: the patient itself is also the data entity BALP Read requires.
        entities.append(
            {
                "what": _reference(rec.references[0]),
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
    """AuditEvents for an entry; with per_patient, one per patient touched (BALP PatientQuery rule)."""
    event = to_audit_event(entry, server_name=server_name, server_address=server_address)
    patients = [p for p in entry.record.patients if p]
    if not per_patient or len(patients) < 2:
        return [event]
    events = []
    for i, pid in enumerate(patients, start=1):
        split = orjson.loads(orjson.dumps(event))
        split["id"] = f"audit-{entry.seq}-{i}"
        keep = f"Patient/{pid}"
        split["entity"] = [
            e for e in split["entity"] if e.get("role", {}).get("code") != "1" or e["what"]["reference"] == keep
        ]
        if entry.record.outcome == "success":
            name = "PatientRead" if entry.record.balp_kind == "read" else "PatientQuery"
            split["meta"] = {"profile": [BALP + name]}
        events.append(split)
    return events


def iter_audit_events(
    log: AuditLog, *, since_seq: int = 0, per_patient: bool = False, **kwargs: Any
) -> Iterator[dict[str, Any]]:
    """AuditEvents for every entry after since_seq, oldest first."""
    for entry in log.iter(since_seq):
        yield from to_audit_events(entry, per_patient=per_patient, **kwargs)


def export_fhir(
    log: AuditLog,
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
