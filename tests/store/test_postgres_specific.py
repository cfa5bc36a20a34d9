"""PostgreSQL-only behaviour: the distribution column, schema isolation, reopening, errors without PHI.

The FhirStore contract itself runs on PostgreSQL through the `postgres` param of STORE_FACTORIES.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from postgres_support import ScratchPostgresStore
from psycopg import sql

from fhirgate.errors import Conflict, InvalidInput, StoreError
from fhirgate.store.contract import StoredResource
from fhirgate.store.postgres import PostgresStore
from pg_server import POSTGRES_URL, needs_postgres

pytestmark = needs_postgres


@pytest.fixture
def pg() -> Iterator[ScratchPostgresStore]:
    store = ScratchPostgresStore()
    yield store
    store.close()


def _rows(store: PostgresStore, statement: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(store.schema)))
        return conn.execute(statement).fetchall()  # fixed test SQL


def test_patient_key_is_the_compartment_owner(pg: ScratchPostgresStore) -> None:
    pg.write(
        [
            {"resourceType": "Patient", "id": "p1"},
            {"resourceType": "Practitioner", "id": "dr1"},
            {"resourceType": "Observation", "id": "o1", "status": "final", "subject": {"reference": "Patient/p1"}},
        ]
    )
    keys = {(t, i): k for t, i, k in _rows(pg, "SELECT type, id, patient_key FROM resources")}
    assert keys == {("Patient", "p1"): "p1", ("Practitioner", "dr1"): None, ("Observation", "o1"): "p1"}
    # Index rows carry the same key, so they can be co-located with their resource.
    assert set(_rows(pg, "SELECT DISTINCT patient_key FROM ix_token WHERE param = 'Observation.status'")) == {("p1",)}
    pg.write([{"resourceType": "Observation", "id": "o1", "status": "final"}])  # no subject: shared now
    assert _rows(pg, "SELECT patient_key FROM resources WHERE id = 'o1'") == [(None,)]
    assert _rows(pg, "SELECT patient_key FROM history WHERE rid = (SELECT rid FROM resources WHERE id = 'o1')") == [
        ("p1",)
    ]


def test_schemas_are_isolated_and_reopen_without_create(pg: ScratchPostgresStore) -> None:
    other = ScratchPostgresStore()
    try:
        pg.write([{"resourceType": "Patient", "id": "p1"}])
        assert other.read("Patient", "p1") is None
        assert other.counts() == {}
    finally:
        other.close()
    again = PostgresStore(POSTGRES_URL, schema=pg.schema, create=False, pool_size=1)
    try:
        got = again.read("Patient", "p1")
        assert got is not None
        assert got.version == 1
    finally:
        again.close()


def test_schema_version_mismatch_is_refused(pg: ScratchPostgresStore) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(
            sql.SQL("UPDATE {}.store_meta SET value = '99' WHERE key = 'schema'").format(sql.Identifier(pg.schema))
        )
    with pytest.raises(StoreError, match="schema 99 is not the supported version"):
        PostgresStore(POSTGRES_URL, schema=pg.schema)


@pytest.mark.parametrize("schema", ["", "Upper", "has space", "x;drop", "a" * 64, "1abc"])
def test_bad_schema_name_is_invalid_input(schema: str) -> None:
    with pytest.raises(InvalidInput):
        PostgresStore(POSTGRES_URL, schema=schema)


def test_unreachable_server_is_a_store_error_without_the_url() -> None:
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        PostgresStore("postgresql://someone:s3cret@127.0.0.1:1/nowhere", schema="fg_unreachable")
    assert time.monotonic() - started < 15
    assert "s3cret" not in str(caught.value)
    assert "someone" not in str(caught.value)


def test_database_errors_name_the_operation_not_the_values(pg: ScratchPostgresStore) -> None:
    pg.write([{"resourceType": "Patient", "id": "jane-doe-1970"}])
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE {}.resources CASCADE").format(sql.Identifier(pg.schema)))
    with pytest.raises(StoreError) as caught:
        pg.read("Patient", "jane-doe-1970")
    assert str(caught.value).startswith("read failed")
    assert "jane" not in str(caught.value)
    with pytest.raises(StoreError) as caught:
        pg.write([{"resourceType": "Patient", "id": "john-roe-1980", "name": [{"family": "Roe"}]}])
    assert str(caught.value).startswith("write failed")
    assert "john" not in str(caught.value)
    assert "Roe" not in str(caught.value)


def test_writers_on_two_store_instances_are_serialized(pg: ScratchPostgresStore) -> None:
    """Two pools (as two server processes) on one schema: the advisory write lock still admits one winner."""
    other = PostgresStore(POSTGRES_URL, schema=pg.schema, create=False, pool_size=2)
    try:
        pg.write([{"resourceType": "Slot", "id": "s1", "status": "free", "schedule": {"reference": "Schedule/x"}}])
        stores = [pg, other]
        barrier = threading.Barrier(2)
        results: list[Any] = [None, None]

        def run(i: int) -> None:
            try:
                barrier.wait(timeout=10)
                body = {
                    "resourceType": "Slot",
                    "id": "s1",
                    "status": f"busy-{i}",
                    "schedule": {"reference": "Schedule/x"},
                }
                results[i] = stores[i].write([body], expect={"Slot/s1": 1})
            except Exception as exc:  # collected for the assertions
                results[i] = exc

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert sum(isinstance(r, list) for r in results) == 1, results
        assert sum(isinstance(r, Conflict) for r in results) == 1, results
        assert [h.version for h in other.history("Slot", "s1")] == [2, 1]
    finally:
        other.close()


def test_prefix_search_on_non_ascii_text(pg: ScratchPostgresStore) -> None:
    from fhirgate.core.fhir.search import parse_search

    pg.write(
        [
            {"resourceType": "Patient", "id": "a", "name": [{"family": "Zoë"}]},
            {"resourceType": "Patient", "id": "b", "name": [{"family": "Zorro"}]},
            {"resourceType": "Patient", "id": "c", "name": [{"family": "\u4e2d\u6587"}]},
        ]
    )

    def ids(params: list[tuple[str, str]]) -> list[str]:
        page = pg.search(parse_search("Patient", params))
        found: list[StoredResource] = page.matches
        return [m.id for m in found]

    assert ids([("family", "zo")]) == ["a", "b"]
    assert ids([("family", "zoe")]) == ["a"]
    assert ids([("family", "\u4e2d")]) == ["c"]
    assert ids([("family:exact", "Zoë")]) == ["a"]
    assert ids([("_sort", "-family")]) == ["c", "b", "a"]


# -- parity with SQLite on the Synthea sample ------------------------------------------------------

PARITY_QUERIES: list[tuple[str, list[tuple[str, str]]]] = [
    ("Patient", []),
    ("Patient", [("gender", "female"), ("_sort", "birthdate")]),
    ("Patient", [("_sort", "-family,_id")]),
    ("Patient", [("name", "m")]),
    ("Patient", [("family:contains", "er")]),
    ("Patient", [("birthdate", "lt1970")]),
    ("Patient", [("birthdate", "ge1960-06"), ("_sort", "-birthdate")]),
    ("Patient", [("address-state", "Massachusetts")]),
    ("Patient", [("deceased:missing", "false")]),
    ("Observation", [("status", "final"), ("_sort", "-date"), ("_count", "50")]),
    ("Observation", [("code", "http://loinc.org|8302-2")]),
    ("Observation", [("code:text", "body")]),
    ("Observation", [("code:not", "http://loinc.org|8302-2"), ("_count", "100"), ("_offset", "40")]),
    ("Observation", [("value-quantity", "gt100"), ("_sort", "value-quantity")]),
    ("Observation", [("value-quantity", "ap70||kg")]),
    ("Observation", [("date", "ge2015-01-01"), ("date", "lt2016"), ("_sort", "date")]),
    ("Observation", [("date", "sa2018"), ("_sort", "-date,_id"), ("_count", "30")]),
    ("Observation", [("category", "vital-signs"), ("_sort", "code")]),
    ("Condition", [("clinical-status", "active"), ("_sort", "-onset-date")]),
    ("Condition", [("code:text", "disorder")]),
    ("Encounter", [("class", "AMB"), ("_sort", "-date"), ("_count", "25")]),
    ("Encounter", [("date", "eq2014"), ("_revinclude", "Observation:encounter")]),
    ("Immunization", [("vaccine-code", "http://hl7.org/fhir/sid/cvx|140")]),
    ("MedicationRequest", [("status", "stopped"), ("_sort", "authoredon")]),
    ("Procedure", [("date", "le2010"), ("_sort", "-date")]),
]


def _ids(page: Any) -> tuple[list[str], list[str], int | None, int | None]:
    return [m.ref for m in page.matches], [i.ref for i in page.included], page.total, page.next_offset


def test_search_parity_with_sqlite_on_synthea(pg: ScratchPostgresStore, synthea_dir: Any, tmp_path: Any) -> None:
    import dataclasses

    import orjson

    from fhirgate.core.fhir.definitions import is_supported
    from fhirgate.core.fhir.extract import extract
    from fhirgate.core.fhir.search import parse_search
    from fhirgate.store.sqlite import SqliteStore

    resources: list[dict[str, Any]] = []
    for path in sorted(synthea_dir.glob("*.json")):
        resources += [e["resource"] for e in orjson.loads(path.read_bytes())["entry"]]
    resources = [r for r in resources if is_supported(r["resourceType"])]
    index = [extract(r) for r in resources]
    lite = SqliteStore(tmp_path / "parity.db")
    try:
        for target in (lite, pg):
            for start in range(0, len(resources), 2000):
                target.write(resources[start : start + 2000], index=index[start : start + 2000])
        assert pg.counts() == lite.counts()
        patient = next(r["id"] for r in resources if r["resourceType"] == "Patient")
        checked = 0
        for rtype, params in PARITY_QUERIES:
            query = parse_search(rtype, [*params, ("_total", "accurate")])
            expected = _ids(lite.search(query))
            assert _ids(pg.search(query)) == expected, (rtype, params)
            narrowed = dataclasses.replace(query, compartment=patient)
            assert _ids(pg.search(narrowed)) == _ids(lite.search(narrowed)), (rtype, params, "compartment")
            checked += bool(expected[0])
        assert checked >= len(PARITY_QUERIES) // 2  # most queries find something, so the comparison means something
        for offset in (0, 37, 100):
            args = {"count": 40, "offset": offset}
            assert _ids(pg.compartment_page(patient, **args)) == _ids(lite.compartment_page(patient, **args))
        only = {"types": ["Observation", "Condition"], "count": 15}
        assert _ids(pg.compartment_page(patient, **only)) == _ids(lite.compartment_page(patient, **only))  # type: ignore[arg-type]
        assert [r.id for r in pg.iter_type("Condition")] == [r.id for r in lite.iter_type("Condition")]
    finally:
        lite.close()
