"""Audit records for the disclosure tests: several patients, purposes, recipients and outcomes."""

from __future__ import annotations

import dataclasses
from typing import Any

from fhirgate.audit.record import AuditRecord

ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
# Values that look like PHI and sit in request arguments: they are digested and must never come out.
PHI_ARGS = {"name": "Smithson", "birthdate": "1950-02-03", "phone": "555-0199"}


def record(request_id: str, time: str, patients: tuple[str, ...], **over: Any) -> AuditRecord:
    """A record with a recipient; `purpose`, `client_id`, `sub`, `fhir_user` override the principal fields."""
    recipient = {
        "client_id": over.pop("client_id", "app-a"),
        "sub": over.pop("sub", "user-7"),
        "fhir_user": over.pop("fhir_user", "Practitioner/dr-1"),
        "purpose_of_use": tuple(over.pop("purpose", ("TREAT",))),
    }
    params: dict[str, Any] = {
        "request_id": request_id,
        "transport": "http",
        "method": "tools/call",
        "name": "search_resources",
        "interaction": "search",
        "balp_kind": "query",
        "outcome": "success",
        "arguments": PHI_ARGS,
        "resource_type": "Observation",
        "query_params": ["patient", "code"],
        "patients": patients,
        "references": [f"Observation/obs-{request_id}"],
        "time": time,
    }
    params.update(over)
    return dataclasses.replace(AuditRecord.new(**params), **recipient)


RECORDS = [
    record("r01", "2024-03-01T10:00:00.000Z", ("pat-1",), name="read_resource", interaction="read", balp_kind="read",
           resource_type=None, query_params=None, references=["Observation/obs-a"]),
    record("r02", "2024-04-10T00:00:00.000Z", ("pat-1", "pat-2"), resource_type="Condition",
           references=["Condition/cond-p1", "Condition/cond-p2", "Patient/pat-2"], purpose=("HRESCH",),
           client_id="research-app", fhir_user=None, sub="analyst-3"),
    record("r03", "2024-05-05T09:00:00.000Z", ("pat-1",), outcome="denied", reason="consent.deny"),
    record("r04", "2024-06-01T23:59:59.999Z", ("pat-1",), fhir_user="Patient/pat-1", sub="pat-1-login",
           purpose=(), client_id="patient-portal"),
    record("r05", "2024-06-02T08:00:00.000Z", ("pat-10",)),
    record("r06", "2015-01-01T08:00:00.000Z", ("pat-1",)),
    record("r07", "2024-07-01T12:00:00.000Z", ("pat-1", "pat-3"), name="run_report", interaction="report",
           resource_type=None, query_params=["patient_activity", "care_gaps"], references=[],
           purpose=(f"{ACT_REASON}|HOPERAT",)),
    record("r08", "2024-07-02T12:00:00.000Z", ("pat-1",), purpose=("TREAT", "HRESCH")),
    record("r09", "2024-07-03T12:00:00.000Z", ("pat-1",), purpose=("http://example.org/purposes|TREAT",)),
    record("r10", "2024-07-04T12:00:00.000Z", ("pat-1",), purpose=("HPAYMT",), client_id="billing-app"),
    record("r11", "2024-07-05T12:00:00.000Z", ("pat-1",), outcome="error", reason="internal.KeyError"),
]  # fmt: skip
