"""Helpers for FHIR API tests: the demo practice with facts read from raw resources (not through fhirgate's
policy code), a served app, tokens, and audit-log counting."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
from starlette.testclient import TestClient

from fhirgate.app import create_http_app
from fhirgate.audit.log import AuditLog
from fhirgate.audit.record import AuditRecord
from fhirgate.auth.devissuer import DevIssuer
from fhirgate.config import DataDir
from fhirgate.demo.generator import write_practice
from fhirgate.store.factory import open_store

TODAY = dt.date(2026, 11, 21)
BASE = "http://127.0.0.1:8765"
SENSITIVE = {"R", "V", "ETH", "PSY", "HIV", "STD", "SDV", "SEX", "BH", "GDIS", "42CFRPart2"}
FHIR_JSON = "application/fhir+json"


def patients_in(node: Any, out: set[str]) -> set[str]:
    """Every Patient id a resource references (raw JSON walk)."""
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str) and ref.startswith("Patient/"):
            out.add(ref.removeprefix("Patient/"))
        for value in node.values():
            patients_in(value, out)
    elif isinstance(node, list):
        for value in node:
            patients_in(value, out)
    return out


def _labelled(body: dict[str, Any]) -> bool:
    codes = {c.get("code") for c in (body.get("meta") or {}).get("security", []) if isinstance(c, dict)}
    return bool(codes & SENSITIVE)


@dataclass
class Facts:
    """What the raw practice says: patients, opt-outs, and resources picked for each test."""

    patients: list[str] = field(default_factory=list)
    optouts: set[str] = field(default_factory=set)
    labelled_patients: set[str] = field(default_factory=set)
    observations: dict[str, int] = field(default_factory=dict)  # patient -> Observation count
    patient_a: str = ""
    patient_b: str = ""
    appointment_with_reason: str = ""
    versioned: str = ""  # Condition/id with two versions
    deleted: str = ""  # Condition/id whose current version is a deletion
    appointment_body: dict[str, Any] = field(default_factory=dict)


def build_practice(path: Path, patients: int = 30) -> tuple[DataDir, Facts]:
    """Write the demo practice into `path`, make a second version of one Condition and delete another."""
    data_dir = DataDir(path).ensure()
    store = open_store(data_dir)
    facts = Facts()
    try:
        write_practice(store, patients=patients, seed=7, today=TODAY)
        facts.patients = sorted(s.id for s in store.iter_type("Patient"))
        for consent in store.iter_type("Consent"):
            rules = {c.get("code") for c in (consent.body.get("policyRule") or {}).get("coding", [])}
            if consent.body.get("status") == "active" and "OPTOUT" in rules:
                facts.optouts.add(consent.body["patient"]["reference"].removeprefix("Patient/"))
        for rtype in ("Observation", "Condition", "Appointment", "Encounter", "DocumentReference", "Patient"):
            for s in store.iter_type(rtype):
                if _labelled(s.body):
                    facts.labelled_patients |= patients_in(s.body, {s.id} if rtype == "Patient" else set())
        for obs in store.iter_type("Observation"):
            for pid in patients_in(obs.body.get("subject"), set()):
                facts.observations[pid] = facts.observations.get(pid, 0) + 1
        clean = [p for p in facts.patients if p not in facts.optouts and p not in facts.labelled_patients]
        ranked = sorted(clean, key=lambda p: (-facts.observations.get(p, 0), p))
        facts.patient_a, facts.patient_b = ranked[0], ranked[1]
        for appt in store.iter_type("Appointment"):
            pats = patients_in(appt.body, set())
            if appt.body.get("reasonCode") and pats and pats <= set(clean):
                facts.appointment_with_reason = appt.id
                facts.appointment_body = appt.body
                break
        conditions = [
            c for c in store.iter_type("Condition") if patients_in(c.body.get("subject"), set()) == {facts.patient_a}
        ]
        first, second = conditions[0], conditions[1]
        store.write([{**first.body, "note": [{"text": "second version"}]}])
        store.delete("Condition", second.id)
        facts.versioned, facts.deleted = first.ref, second.ref
    finally:
        store.close()
    data_dir.update_settings("server", {"resource_url": f"{BASE}/mcp"})
    data_dir.update_settings("auth", {"trust_dev_issuer": True})
    assert facts.optouts and facts.appointment_with_reason, "the demo practice has opt-outs and visit reasons"
    return data_dir, facts


@dataclass
class Api:
    """A served app: its client, token issuer, audit log and the practice facts."""

    client: TestClient
    issuer: DevIssuer
    audit: AuditLog
    data_dir: DataDir
    facts: Facts

    def token(self, scope: str = "user/*.rs", **kw: Any) -> str:
        return self.issuer.mint(scope=scope, audience=f"{BASE}/mcp", **kw)

    def get(self, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
        headers = {"Accept": FHIR_JSON, **kw.pop("headers", {})}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.get(path if path.startswith("http") else f"/fhir/{path}", headers=headers, **kw)

    def post(self, path: str, token: str | None, body: Any, **kw: Any) -> httpx.Response:
        headers = {"Content-Type": FHIR_JSON, **kw.pop("headers", {})}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.post(f"/fhir/{path}".rstrip("/"), json=body, headers=headers, **kw)

    def count(self) -> int:
        return self.audit.count()

    def since(self, before: int) -> list[AuditRecord]:
        """The records written after `before` records existed, oldest first."""
        added = self.count() - before
        return [e.record for e in self.audit.tail(added)] if added else []


def serve(data_dir: DataDir, facts: Facts, *, allow_writes: bool) -> Iterator[Api]:
    """The real app with the FHIR API on, served in-process; the audit log opened beside it."""
    issuer = DevIssuer.load_or_create(data_dir.keys_dir)
    app = create_http_app(data_dir, key=None, allow_writes=allow_writes, fhir_api=True)
    with TestClient(app, base_url=BASE, raise_server_exceptions=True) as client:
        audit = AuditLog(data_dir.audit_path, chain_key=data_dir.secret("audit-chain"))
        try:
            yield Api(client, issuer, audit, data_dir, facts)
        finally:
            audit.close()
