"""PostgresStore.write_prepared (the PreparedWriter bulk path) stores exactly what `write` stores, atomically."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from postgres_support import ScratchPostgresStore
from psycopg import sql

from fhirgate.core.fhir.definitions import is_supported
from fhirgate.core.fhir.search import parse_search
from fhirgate.errors import InvalidInput, StoreError, ValidationFailed
from fhirgate.ingest.loader import load_paths
from fhirgate.ingest.payload import prepare_resource
from fhirgate.store.contract import PreparedResource, PreparedWriter, StoredResource
from fhirgate.store.postgres import PostgresStore
from fhirgate.store.postgres.schema import INDEXES, LOAD_KEPT, ROW_TABLES, SCHEMA_VERSION, drop_load_indexes
from pg_server import POSTGRES_URL, needs_postgres

pytestmark = needs_postgres


@pytest.fixture
def pair() -> Iterator[tuple[PostgresStore, PostgresStore]]:
    """Two empty stores: one written through `write`, the other through `write_prepared`."""
    a, b = ScratchPostgresStore(), ScratchPostgresStore()
    try:
        yield a, b
    finally:
        a.close()
        b.close()


@pytest.fixture
def pg() -> Iterator[PostgresStore]:
    s = ScratchPostgresStore()
    try:
        yield s
    finally:
        s.close()


def _synthea(folder: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.json")):
        out += [e["resource"] for e in orjson.loads(path.read_bytes())["entry"]]
    return [r for r in out if is_supported(r["resourceType"])]


def _prepared(resources: list[dict[str, Any]]) -> list[PreparedResource]:
    return [prepare_resource(r, r["resourceType"], r["id"]) for r in resources]


def _shape(v: StoredResource) -> tuple[Any, ...]:
    """A stored version without its write time (the two stores write at different instants)."""
    body = copy.deepcopy(v.body)
    assert body["meta"].pop("lastUpdated") == v.last_updated
    return (v.resource_type, v.id, v.version, v.deleted, body)


def _ids(store: PostgresStore, rtype: str, params: list[tuple[str, str]]) -> list[str]:
    """Every matching id, in result order (pages of 100)."""
    out: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = store.search(parse_search(rtype, [*params, ("_count", "100"), ("_offset", str(offset))]))
        out += [m.id for m in page.matches]
        offset = page.next_offset
    return out


def test_is_a_prepared_writer(pg: PostgresStore) -> None:
    assert isinstance(pg, PreparedWriter)
    assert pg.write_prepared([]) == 0


@pytest.mark.shared
def test_write_prepared_matches_write_on_synthea(pair: tuple[PostgresStore, PostgresStore], synthea_dir: Path) -> None:
    plain, bulk = pair
    resources = _synthea(synthea_dir)
    items = _prepared(resources)
    for start in range(0, len(resources), 2000):
        plain.write(resources[start : start + 2000], index=[p.index for p in items[start : start + 2000]])
        assert bulk.write_prepared(items[start : start + 2000]) == len(items[start : start + 2000])
    assert plain.counts() == bulk.counts()
    for r in resources:
        a, b = plain.read(r["resourceType"], r["id"]), bulk.read(r["resourceType"], r["id"])
        assert a is not None and b is not None
        assert _shape(a) == _shape(b)

    # Updates (existing ids) keep history, through either path; a repeated id in one batch is two versions.
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    observations = [r for r in resources if r["resourceType"] == "Observation"][:300]
    changed = [{**r, "active": False} for r in patients] + [{**r, "status": "amended"} for r in observations]
    again = {**patients[0], "gender": "unknown"}
    batch = [*changed, again]
    plain.write(batch)
    assert bulk.write_prepared(_prepared(batch)) == len(batch)
    for r in [*patients, *observations]:
        ha, hb = plain.history(r["resourceType"], r["id"]), bulk.history(r["resourceType"], r["id"])
        assert [_shape(v) for v in ha] == [_shape(v) for v in hb]
    assert [v.version for v in bulk.history("Patient", patients[0]["id"])] == [3, 2, 1]
    assert bulk.read("Patient", patients[0]["id"]).body["gender"] == "unknown"  # type: ignore[union-attr]

    pid, family = patients[1]["id"], patients[1]["name"][0]["family"]
    searches: list[tuple[str, list[tuple[str, str]]]] = [
        ("Observation", [("status", "final")]),
        ("Observation", [("status", "amended")]),
        ("Patient", [("family:exact", family)]),
        ("Patient", [("active", "false")]),
        ("Patient", [("gender", "unknown")]),
        ("Condition", [("code", "http://snomed.info/sct|")]),
        ("Encounter", [("date", "ge2015-01-01")]),
        ("Observation", [("value-quantity", "gt50")]),
        ("Immunization", [("_lastUpdated", "gt2000-01-01")]),
    ]
    for rtype, params in searches:
        assert _ids(plain, rtype, params) == _ids(bulk, rtype, params), (rtype, params)
    assert _ids(bulk, "Observation", [("status", "amended")])
    a_page, b_page = plain.compartment_page(pid, count=5000), bulk.compartment_page(pid, count=5000)
    assert a_page.total == b_page.total
    assert [m.ref for m in a_page.matches] == [m.ref for m in b_page.matches]


def _sample(n: int) -> list[dict[str, Any]]:
    return [
        {
            "resourceType": "Patient",
            "id": f"p{i}",
            "meta": {"profile": ["http://example.org/p"]} if i % 2 else {"versionId": "9"},
            "name": [{"family": f"Fam{i}"}],
        }
        for i in range(n)
    ]


def test_prepared_body_shape_and_meta(pg: PostgresStore) -> None:
    resources = _sample(4)
    pg.write_prepared(_prepared(resources))
    for r in resources:
        got = pg.read("Patient", r["id"])
        assert got is not None
        meta = {k: v for k, v in r["meta"].items() if k != "versionId"}
        assert got.body == {**r, "meta": {**meta, "versionId": "1", "lastUpdated": got.last_updated}}
    empty = PreparedResource(
        "Patient",
        "bare",
        None,
        '{"resourceType":"Patient","id":"bare"}',
        prepare_resource({"resourceType": "Patient", "id": "bare"}, "Patient", "bare").index,
    )
    pg.write_prepared([empty])
    got = pg.read("Patient", "bare")
    assert got is not None
    assert got.body == {
        "resourceType": "Patient",
        "id": "bare",
        "meta": {"versionId": "1", "lastUpdated": got.last_updated},
    }


def test_failure_mid_batch_writes_nothing(pg: PostgresStore) -> None:
    first = _sample(3)
    pg.write_prepared(_prepared(first))
    before = {r["id"]: pg.history("Patient", r["id"]) for r in first}

    updates = _prepared([{**r, "gender": "other"} for r in first])
    fresh = _prepared(_sample(10)[3:])
    # Malformed JSON body in the middle: refused by PostgreSQL during COPY, after the updates were applied.
    broken = PreparedResource("Patient", "broken", None, '{"resourceType":"Patient",', fresh[0].index)
    with pytest.raises(StoreError):
        pg.write_prepared([*updates, *fresh[:3], broken, *fresh[3:]])
    # Malformed id: refused before anything is sent.
    bad_id = PreparedResource("Patient", "no spaces allowed", None, fresh[0].body, fresh[0].index)
    with pytest.raises(ValidationFailed):
        pg.write_prepared([*updates, bad_id, *fresh])

    assert pg.counts() == {"Patient": 3}
    for r in first:
        assert [_shape(v) for v in pg.history("Patient", r["id"])] == [_shape(v) for v in before[r["id"]]]
    assert _ids(pg, "Patient", [("gender", "other")]) == []
    assert _ids(pg, "Patient", [("family", "Fam5")]) == []
    # The store is usable afterwards, and rid allocation is unaffected by the rolled-back attempt.
    assert pg.write_prepared([*updates, *fresh]) == 10
    assert sorted(_ids(pg, "Patient", [("gender", "other")])) == ["p0", "p1", "p2"]
    assert [v.version for v in pg.history("Patient", "p0")] == [2, 1]


# -- initial_load ------------------------------------------------------------------------------------


def _indexes(store: PostgresStore) -> set[str]:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        rows = conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s", (store.schema,)).fetchall()
    return {str(r[0]) for r in rows}


def _analyzed(store: PostgresStore) -> set[str]:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT relname FROM pg_stat_user_tables WHERE schemaname = %s AND last_analyze IS NOT NULL",
            (store.schema,),
        ).fetchall()
    return {str(r[0]) for r in rows}


def test_initial_load_rebuilds_every_index_and_analyzes(pg: PostgresStore) -> None:
    every = _indexes(pg)
    assert set(INDEXES) <= every
    assert pg.is_empty()
    with pg.initial_load():
        assert _indexes(pg) == every - (set(INDEXES) - LOAD_KEPT)  # constraints' indexes and LOAD_KEPT stay
        pg.write_prepared(_prepared(_sample(50)))
        assert _ids(pg, "Patient", [("family", "Fam7")]) == ["p7"]  # searches stay correct without indexes
    assert _indexes(pg) == every
    assert {"resources", *ROW_TABLES} <= _analyzed(pg)
    assert not pg.is_empty()
    assert _ids(pg, "Patient", [("family", "Fam7")]) == ["p7"]
    pg.refresh_statistics()  # skipped once (nothing written since the exit's ANALYZE), then runs again
    pg.refresh_statistics()


def test_initial_load_refuses_a_non_empty_store(pg: PostgresStore) -> None:
    pg.write_prepared(_prepared(_sample(1)))
    every = _indexes(pg)
    with pytest.raises(InvalidInput, match="empty store"), pg.initial_load():
        pytest.fail("entered")  # pragma: no cover
    assert _indexes(pg) == every


def test_initial_load_failures_leave_nothing_and_restore_the_indexes(pg: PostgresStore) -> None:
    every = _indexes(pg)
    fresh = _prepared(_sample(6))
    broken = PreparedResource("Patient", "broken", None, '{"resourceType":"Patient","name":"jane-doe",', fresh[0].index)

    def failing_load() -> None:
        with pg.initial_load():
            with pytest.raises(StoreError) as caught:
                pg.write_prepared([*fresh[:3], broken, *fresh[3:]])
            assert "jane" not in str(caught.value)
            assert pg.counts() == {}
            raise RuntimeError("the load fails")

    with pytest.raises(RuntimeError):
        failing_load()
    assert _indexes(pg) == every
    assert pg.is_empty()
    with pg.initial_load():  # still empty, so allowed again
        assert pg.write_prepared(fresh) == 6
    assert _indexes(pg) == every
    assert sorted(_ids(pg, "Patient", [("family:exact", "Fam4")])) == ["p4"]


def test_interrupted_initial_load_is_repaired_when_the_store_opens(pg: PostgresStore) -> None:
    every = _indexes(pg)
    with pg._transaction() as conn:  # what initial_load leaves if the process dies inside it
        drop_load_indexes(conn)
    assert _indexes(pg) != every
    PostgresStore(POSTGRES_URL, schema=pg.schema, pool_size=1).close()
    assert _indexes(pg) == every


def test_load_paths_uses_initial_load_on_an_empty_store(pg: PostgresStore, tmp_path: Path) -> None:
    entries = [{"resource": r, "request": {"method": "PUT", "url": f"Patient/{r['id']}"}} for r in _sample(20)]
    (tmp_path / "b.json").write_bytes(orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}))
    entered: list[bool] = []
    inner = pg.initial_load

    @contextmanager
    def spy() -> Iterator[None]:
        entered.append(True)
        with inner():
            yield

    pg.initial_load = spy  # type: ignore[method-assign]
    summary = load_paths(pg, [tmp_path], workers=0)
    assert entered == [True]
    assert summary.resources == 20
    assert pg.counts() == {"Patient": 20}
    assert set(INDEXES) <= _indexes(pg)


@pytest.mark.parametrize("old", ["1", "2"])
def test_old_schema_is_migrated_to_lz4_bodies(pg: PostgresStore, old: str) -> None:
    pg.write_prepared(_prepared(_sample(2)))
    schema = sql.Identifier(pg.schema)
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER TABLE {}.resources ALTER COLUMN body SET COMPRESSION pglz").format(schema))
        if old == "1":
            conn.execute(sql.SQL("ALTER TABLE {}.resources DROP COLUMN txid").format(schema))
        conn.execute(sql.SQL("UPDATE {}.store_meta SET value = %s WHERE key = 'schema'").format(schema), (old,))
    PostgresStore(POSTGRES_URL, schema=pg.schema, pool_size=1).close()
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        meta = conn.execute(sql.SQL("SELECT value FROM {}.store_meta WHERE key = 'schema'").format(schema)).fetchone()
        lz4 = conn.execute("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")
        method = conn.execute(
            "SELECT attcompression FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'body'",
            (f"{pg.schema}.resources",),
        ).fetchone()
        txid = conn.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = %s AND table_name = 'resources'"
            " AND column_name = 'txid'",
            (pg.schema,),
        ).fetchone()
    assert meta == (SCHEMA_VERSION,)
    assert method == (("l" if lz4.fetchone() == (True,) else "p"),)
    assert txid == (1,)
    assert pg.read("Patient", "p1") is not None
