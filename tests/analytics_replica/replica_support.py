"""Helpers for analytics replica tests: handcrafted resources, principals, reads of a replica file and of PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.scopes import ScopeSet
from fhirgate.database import open_sqlite
from fhirgate.location import Location
from fhirgate.service.context import RequestContext
from fhirgate.service.gateway import Gateway
from fhirgate.store.contract import FhirStore
from pg_server import POSTGRES_URL

Json = dict[str, Any]
PRACTITIONERS = {"pr-1": "House", "pr-2": "Grey", "pr-3": "Quinn"}
PATIENTS = ("pt-1", "pt-2", "pt-3", "pt-4")
VISITS = 3  # appointments per patient


def practitioner(id_: str, family: str) -> Json:
    return {"resourceType": "Practitioner", "id": id_, "active": True, "name": [{"family": family, "given": ["A"]}]}


def patient(id_: str) -> Json:
    return {
        "resourceType": "Patient",
        "id": id_,
        "active": True,
        "name": [{"family": f"Fam-{id_}", "given": ["B"]}],
        "gender": "female",
        "birthDate": "1970-01-01",
    }


def appointment(id_: str, patient_id: str, practitioner_id: str, status: str = "fulfilled", day: int = 1) -> Json:
    return {
        "resourceType": "Appointment",
        "id": id_,
        "status": status,
        "start": f"2025-03-{day:02d}T09:00:00Z",
        "end": f"2025-03-{day:02d}T09:30:00Z",
        "participant": [
            {"actor": {"reference": f"Patient/{patient_id}"}, "status": "accepted"},
            {"actor": {"reference": f"Practitioner/{practitioner_id}"}, "status": "accepted"},
        ],
    }


def seed() -> list[Json]:
    """Three practitioners, four patients, three appointments each."""
    out: list[Json] = [practitioner(i, f) for i, f in PRACTITIONERS.items()]
    out += [patient(p) for p in PATIENTS]
    for n, p in enumerate(PATIENTS):
        for k in range(VISITS):
            out.append(appointment(f"ap-{p}-{k}", p, f"pr-{1 + (n + k) % 3}", day=1 + k))
    return out


def optout_consent(id_: str, patient_id: str) -> Json:
    """An active privacy Consent with policyRule OPTOUT, shaped as the demo generator's (demo/clinical.py)."""
    return {
        "resourceType": "Consent",
        "id": id_,
        "status": "active",
        "scope": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "dateTime": "2020-01-01T09:30:00Z",
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
        "provision": {"type": "deny", "period": {"start": "2020-01-01"}},
    }


USER = Principal(sub="tester", issuer="urn:test", scopes=ScopeSet.parse("user/*.rs"), client_id="tests")


def patient_user(patient_id: str) -> Principal:
    return Principal(
        sub="patient-app",
        issuer="urn:test",
        scopes=ScopeSet.parse("launch/patient patient/*.rs"),
        client_id="tests",
        patient=patient_id,
    )


def query(gw: Gateway, text: str, who: Principal = USER) -> list[list[Any]]:
    """query_sql through the gateway: its rows (one page of up to 200; asserted complete)."""
    out = gw.query_sql(RequestContext(who, name="query_sql"), text, max_rows=200)
    assert out["page"]["next_cursor"] is None
    return [list(r) for r in out["rows"]]


def replica_rows(path: Path, key: str | None, text: str) -> list[tuple[Any, ...]]:
    """Rows of `text` read straight from a replica file (a fresh read-only connection)."""
    conn = open_sqlite(path, key=key, readonly=True)
    try:
        return [tuple(r) for r in conn.execute(text).fetchall()]
    finally:
        conn.close()


def pg_connect(schema: str, *, autocommit: bool = True) -> psycopg.Connection[tuple[Any, ...]]:
    conn = psycopg.connect(POSTGRES_URL, autocommit=autocommit)
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    return conn


def pg_scalar(schema: str, text: str, args: tuple[Any, ...] = ()) -> Any:
    with pg_connect(schema) as conn:
        row = conn.execute(text, args).fetchone()
    assert row is not None
    return row[0]


def pg_live_ids(schema: str, rtype: str) -> set[str]:
    with pg_connect(schema) as conn:
        rows = conn.execute("SELECT id FROM resources WHERE type = %s AND NOT deleted", (rtype,)).fetchall()
    return {str(r[0]) for r in rows}


@dataclass
class PgPractice:
    """A PostgreSQL location, its schema and an open store on it (another connection than any gateway's)."""

    location: Location
    schema: str
    store: FhirStore
