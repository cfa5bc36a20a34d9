"""Helpers for SQL analytics tests: a store file with view tables and raw store tables (plain SQL), principals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw

from fhirgate.audit.record import AuditRecord
from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.scopes import ScopeSet

SCHEMA = """
CREATE TABLE store_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE resources(rid INTEGER PRIMARY KEY, type TEXT, id TEXT, body TEXT);
CREATE TABLE compartment(patient TEXT, rid INTEGER);
CREATE TABLE params(pid INTEGER PRIMARY KEY, rtype TEXT NOT NULL, code TEXT NOT NULL);
CREATE TABLE ix_token(rid INTEGER NOT NULL, pid INTEGER NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL);
CREATE TABLE patient(id TEXT, active INTEGER, family TEXT, given TEXT, gender TEXT, birth_date TEXT,
  deceased INTEGER, mrn TEXT, city TEXT, state TEXT, postal_code TEXT, general_practitioner_id TEXT,
  organization_id TEXT, _rid INTEGER NOT NULL);
CREATE TABLE practitioner(id TEXT, active INTEGER, family TEXT, given TEXT, prefix TEXT, suffix TEXT, npi TEXT,
  gender TEXT, _rid INTEGER NOT NULL);
CREATE TABLE appointment(id TEXT, patient_id TEXT, practitioner_id TEXT, location_id TEXT, status TEXT,
  service_code TEXT, service_display TEXT, service_category TEXT, appointment_type TEXT, start_time TEXT,
  end_time TEXT, minutes INTEGER, created TEXT, cancel_reason TEXT, _rid INTEGER NOT NULL);
CREATE INDEX "appointment$start_time" ON appointment(start_time);
CREATE INDEX "appointment$patient_id$start_time" ON appointment(patient_id, start_time);
CREATE TABLE condition(id TEXT, patient_id TEXT, encounter_id TEXT, clinical_status TEXT,
  verification_status TEXT, category TEXT, onset TEXT, abatement TEXT, recorded_date TEXT, text TEXT,
  system TEXT, code TEXT, display TEXT, _rid INTEGER NOT NULL);
"""

PATIENTS = [("p1", "Smith", "Alice"), ("p2", "Jones", "Bob"), ("p3", "Brown", "Carol")]


def build_store(path: Path) -> Path:
    """store.db with three patients, two practitioners, appointments and conditions (WAL, like the store)."""
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA journal_mode=WAL")
    with conn:
        conn.execute(SCHEMA)
        conn.execute("INSERT INTO resources VALUES (1, 'Patient', 'p1', '{\"secret\": \"raw body\"}')")
        conn.execute("INSERT INTO store_meta VALUES ('version', '1')")
        for i, (pid, family, given) in enumerate(PATIENTS, start=1):
            conn.execute(
                "INSERT INTO patient(id, active, family, given, gender, birth_date, _rid) VALUES (?,1,?,?,'female',"
                "'1970-01-01',?)",
                (pid, family, given, 100 + i),
            )
        conn.execute("INSERT INTO practitioner VALUES ('dr1',1,'House','Greg','Dr',NULL,'111','male',201)")
        conn.execute("INSERT INTO practitioner VALUES ('dr2',1,'Grey','Meredith','Dr',NULL,'222','female',202)")
        rows: list[tuple[Any, ...]] = []
        rid = 1000
        for pid, _, _ in PATIENTS:
            for day in range(1, 11):
                rid += 1
                status = "noshow" if day % 3 == 0 else "fulfilled"
                doctor = "dr1" if day % 2 else "dr2"
                start = f"2025-03-{day:02d}T09:00:00-05:00"
                rows.append((f"a-{pid}-{day}", pid, doctor, status, start, 30, rid))
        conn.executemany(
            "INSERT INTO appointment(id, patient_id, practitioner_id, status, start_time, minutes, _rid) "
            "VALUES (?,?,?,?,?,?,?)",
            rows,
        )
        conn.execute(
            "INSERT INTO condition(id, patient_id, clinical_status, system, code, display, text, _rid) VALUES "
            "('c1','p1','active','http://hl7.org/fhir/sid/icd-10-cm','E11.9','Type 2 diabetes','Diabetes',301),"
            "('c2','p2','active','http://hl7.org/fhir/sid/icd-10-cm','I10','Hypertension','HTN',302),"
            "('c3','p3','active','http://hl7.org/fhir/sid/icd-10-cm','E11.9','Type 2 diabetes','Diabetes',303)"
        )
    conn.close()
    return path


def principal(
    scope: str, *, patient: str | None = None, sub: str = "tester", fhir_user: str | None = None
) -> Principal:
    return Principal(
        sub=sub,
        issuer="urn:test",
        scopes=ScopeSet.parse(scope),
        client_id="tests",
        patient=patient,
        fhir_user=fhir_user,
    )


class ListSink:
    """An audit sink keeping records in memory."""

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    def append(self, record: AuditRecord) -> int:
        self.records.append(record)
        return len(self.records)


class FakeStore:
    """Just enough of SqliteStore for the Gateway to build its SQL sandbox."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def reopen_args(self) -> tuple[Path, str | None]:
        return self.path, None

    def fingerprint(self, resource_type: str) -> str:  # governance: no Consents here
        return "empty"

    def iter_type(self, resource_type: str) -> Iterator[Any]:
        return iter(())

    def linked_patients(self, target: str, via: Any) -> frozenset[str]:
        return frozenset()

    def close(self) -> None:
        pass
