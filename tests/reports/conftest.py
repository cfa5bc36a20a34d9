"""Fixtures for report tests: a generated demo practice, its raw resources, gateways and principals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from report_oracle import DEMO_TODAY, Raw
from report_policy import unthrottled_policy

from fhirgate.app import build_gateway
from fhirgate.config import DataDir
from fhirgate.demo.generator import DemoSummary, write_practice
from fhirgate.location import Location, open_location
from fhirgate.service.gateway import Gateway
from fhirgate.store.factory import open_store
from pg_server import drop_schema, location_url, needs_postgres, scratch_schema

TODAY = DEMO_TODAY
PATIENTS = 120
RAW_TYPES = ("Patient", "Practitioner", "Appointment", "Encounter", "Claim", "Invoice", "Condition", "Observation")


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgres", marks=needs_postgres)])
def demo_dir(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Location, DemoSummary]]:
    """A demo practice of 120 patients anchored at TODAY, in a data directory (its views built as it is written)
    and in a PostgreSQL schema (its views in an analytics replica, caught up before each call)."""
    schema = scratch_schema("fg_reports") if request.param == "postgres" else None
    data: Location = (
        open_location(location_url(schema)) if schema else DataDir(tmp_path_factory.mktemp("report-demo"))
    ).ensure()
    store = open_store(data)
    try:
        summary = write_practice(store, patients=PATIENTS, seed=7, today=TODAY)
    finally:
        store.close()
    yield data, summary
    if schema:
        drop_schema(schema)


def opted_out(consents: list[dict[str, Any]]) -> set[str]:
    """Patients with an active Consent whose policyRule is OPTOUT (computed here, not by fhirgate's consent code)."""
    out: set[str] = set()
    for c in consents:
        codes = {cd.get("code") for cd in (c.get("policyRule") or {}).get("coding", [])}
        if c.get("status") == "active" and "OPTOUT" in codes:
            out.add(str(c["patient"]["reference"]).removeprefix("Patient/"))
    return out


# The sensitive label codes withheld from practice_staff (the default role) by the default policy, and left
# out of the derived tables (issue 5 item 3, REFERENCE §5); written out here, not taken from fhirgate.
SENSITIVE = frozenset({"R", "V", "ETH", "PSY", "HIV", "STD", "SDV", "SEX", "BH", "GDIS", "42CFRPart2"})


def sensitive(body: dict[str, Any]) -> bool:
    """Whether a resource's raw meta.security carries a SENSITIVE code."""
    security = (body.get("meta") or {}).get("security") or []
    return any(isinstance(c, dict) and c.get("code") in SENSITIVE for c in security)


def _about(body: dict[str, Any], patients: set[str]) -> bool:
    """Whether a resource is one of `patients` or references one of them anywhere."""
    if body.get("resourceType") == "Patient" and body.get("id") in patients:
        return True
    text = orjson.dumps(body).decode()
    return any(f'"Patient/{p}"' in text for p in patients)


@pytest.fixture(scope="session")
def raw(demo_dir: tuple[Location, DemoSummary]) -> Raw:
    """The demo's raw FHIR JSON, read straight from the store (not from the view tables).

    Patients who opted out of AI access (an active OPTOUT Consent) are left out: every report leaves them
    out for the practice-wide principals these tests use (default policy, optout_aggregates = false).
    So are resources carrying a sensitive security label: the default role (practice_staff) sees none.
    """
    store = open_store(demo_dir[0], create=False)
    try:
        by_type: dict[str, list[dict[str, Any]]] = {t: [s.body for s in store.iter_type(t)] for t in RAW_TYPES}
        gone = opted_out([s.body for s in store.iter_type("Consent")])
    finally:
        store.close()
    assert gone, "the demo practice has opted-out patients"
    assert any(sensitive(b) for b in by_type["Claim"]), "the demo practice has sensitive-labelled claims"
    return Raw({t: [b for b in bodies if not _about(b, gone) and not sensitive(b)] for t, bodies in by_type.items()})


@pytest.fixture(scope="session")
def gateway(demo_dir: tuple[Location, DemoSummary]) -> Iterator[Gateway]:
    gw = build_gateway(demo_dir[0], key=None, policy=unthrottled_policy())
    yield gw
    gw.close()


@pytest.fixture
def edge_dir(tmp_path: Path) -> DataDir:
    return DataDir(tmp_path / "edge").ensure()
