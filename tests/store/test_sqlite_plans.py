"""Query plans, not timings: a compartment-restricted search must be driven by the patient's compartment rows,
so "everything about patient X" stays an index lookup however large the practice grows."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from fhirgate.core.fhir.search import parse_search
from fhirgate.store.sqlite.store import SqliteStore


@pytest.fixture
def sqlite(tmp_path: Path) -> SqliteStore:
    store = SqliteStore(tmp_path / "store.db")
    patients = [{"resourceType": "Patient", "id": f"p{i}"} for i in range(30)]
    observations = [
        {
            "resourceType": "Observation",
            "id": f"o{i}",
            "status": "final",
            "category": [{"coding": [{"code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/p{i % 30}"},
            "effectiveDateTime": f"2024-01-{1 + i % 28:02d}",
        }
        for i in range(600)
    ]
    store.write(patients + observations)
    return store


def plan(store: SqliteStore, sql: str, args: list[object]) -> list[str]:
    conn = store._conn()  # the plan is a SQLite detail, tested on the SQLite store only
    return [str(row[3]) for row in conn.execute("EXPLAIN QUERY PLAN " + sql, args)]


def test_compartment_search_is_driven_by_the_compartment(sqlite: SqliteStore) -> None:
    query = parse_search("Observation", [("category", "vital-signs"), ("_sort", "-date")])
    sql, args = sqlite._sql.select(replace(query, compartment="p3"), 21)
    steps = plan(sqlite, sql, args)
    assert any("compartment" in s and "patient=?" in s for s in steps), steps
    # The category clause probes the token index per compartment row rather than listing every match.
    assert not any(s.startswith("LIST SUBQUERY") for s in steps), steps
    page = sqlite.search(replace(query, compartment="p3", count=50))
    assert {m.id for m in page.matches} == {f"o{i}" for i in range(600) if i % 30 == 3}


def test_practice_wide_search_is_driven_by_the_value_index(sqlite: SqliteStore) -> None:
    query = parse_search("Observation", [("code", "http://loinc.org|8867-4")])
    sql, args = sqlite._sql.select(query, 21)
    steps = plan(sqlite, sql, args)
    assert any("ix_token_v" in s for s in steps), steps
