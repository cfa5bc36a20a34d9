"""The fast ingest path: worker-prepared files, prepared writes, initial loads; same store as the plain path."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhirgate.core.fhir.search import parse_search
from fhirgate.errors import InvalidInput, StoreError
from fhirgate.ingest.loader import load_paths
from fhirgate.ingest.payload import decode, encode, encode_rows, prepare_resource
from fhirgate.store.contract import PreparedWriter
from fhirgate.store.sqlite.schema import VALUE_INDEXES
from fhirgate.store.sqlite.store import SqliteStore

NPI = "http://hl7.org/fhir/sid/us-npi"
_FAST_PATH = ("write_prepared", "write_rows", "initial_load", "row_plan", "is_empty", "reopen_args")


class PlainStore:
    """A SqliteStore seen through the FhirStore Protocol only: the loader falls back to write(dicts)."""

    def __init__(self, inner: SqliteStore) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name in _FAST_PATH:
            raise AttributeError(name)
        return getattr(self._inner, name)


def _snapshot(store: SqliteStore) -> dict[str, Any]:
    """Every stored body (minus lastUpdated) and every index row, keyed by (type, id) instead of rowid."""
    conn = store._conn()
    keys = {rid: (t, i) for rid, t, i in conn.execute("SELECT rid, type, id FROM resources")}
    params = {pid: (t, c) for pid, t, c in conn.execute("SELECT pid, rtype, code FROM params")}
    bodies = {}
    for rid, version, body in conn.execute("SELECT rid, version, body FROM resources"):
        doc = orjson.loads(body)
        doc["meta"].pop("lastUpdated")
        bodies[keys[rid]] = (version, doc)
    rows: dict[str, Counter[tuple[Any, ...]]] = {}
    for table in ("ix_token", "ix_token_text", "ix_string", "ix_date", "ix_reference", "ix_quantity", "ix_uri"):
        rows[table] = Counter((keys[r[0]], params[r[1]], *r[2:]) for r in conn.execute(f"SELECT * FROM {table}"))
    rows["compartment"] = Counter((keys[r[0]], r[1]) for r in conn.execute("SELECT rid, patient FROM compartment"))
    return {"bodies": bodies, "rows": rows}


def _bundle(entries: list[dict[str, Any]], btype: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": btype, "entry": entries}


def _patient_txn(uid: str, *, status: str = "final", practitioner: str = "1") -> dict[str, Any]:
    obs = {
        "resourceType": "Observation",
        "status": status,
        "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
        "subject": {"reference": f"urn:uuid:{uid}"},
        "performer": [{"reference": f"Practitioner?identifier={NPI}|{practitioner}"}],
        "meta": {"profile": ["http://example.org/p"]},
    }
    return _bundle(
        [
            {
                "fullUrl": f"urn:uuid:{uid}",
                "resource": {"resourceType": "Patient", "gender": "female"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:" + uid.replace("-8000-", "-9000-"),  # a fixed id, so two loads compare
                "resource": obs,
                "request": {"method": "POST", "url": "Observation"},
            },
        ]
    )


def _write_files(folder: Path, docs: dict[str, Any]) -> None:
    for name, doc in docs.items():
        (folder / name).write_bytes(orjson.dumps(doc))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    practitioner = {"resourceType": "Practitioner", "id": "pr1", "identifier": [{"system": NPI, "value": "1"}]}
    docs: dict[str, Any] = {"practitionerInformation.json": _bundle([{"resource": practitioner}], "collection")}
    for k in range(6):
        docs[f"p{k}.json"] = _patient_txn(f"00000000-0000-4000-8000-00000000000{k}")
    _write_files(data, docs)
    return data


def test_sqlite_store_has_the_fast_path(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    assert isinstance(store, PreparedWriter)
    assert not isinstance(PlainStore(store), PreparedWriter)
    store.close()


@pytest.mark.parametrize("workers", [0, 2])
def test_pipeline_stores_exactly_what_the_plain_path_stores(tmp_path: Path, folder: Path, workers: int) -> None:
    plain = SqliteStore(tmp_path / "plain.db")
    fast = SqliteStore(tmp_path / "fast.db")
    calls: list[int] = []
    real = fast.write_rows

    def spy(resources: Any, tables: Any) -> int:
        calls.append(len(resources))
        return real(resources, tables)

    fast.write_rows = spy  # type: ignore[method-assign]
    a = load_paths(PlainStore(plain), [folder], validation="fast", workers=0)  # type: ignore[arg-type]
    b = load_paths(fast, [folder], validation="fast", workers=workers)
    assert a.rejected == b.rejected == []
    assert a.loaded == b.loaded == {"Patient": 6, "Observation": 6, "Practitioner": 1}
    # With workers every patient bundle arrives as worker-built rows (none was declined).
    assert calls == ([2] * 6 if workers else [])
    assert _snapshot(plain) == _snapshot(fast)
    obs = next(iter(fast.iter_type("Observation"))).body
    assert obs["performer"][0]["reference"] == "Practitioner/pr1"
    assert obs["meta"]["profile"] == ["http://example.org/p"] and obs["meta"]["versionId"] == "1"
    # Searches answer the same after the initial load rebuilt the indexes.
    for store in (plain, fast):
        page = store.search(parse_search("Observation", [("performer", "Practitioner/pr1"), ("code", "8302-2")]))
        assert len(page.matches) == 6
    names = {r[0] for r in fast._conn().execute("SELECT name FROM sqlite_schema WHERE type = 'index'")}
    assert set(VALUE_INDEXES) <= names
    plain.close()
    fast.close()


def test_pipeline_keeps_transactions_atomic(tmp_path: Path, folder: Path) -> None:
    # A bad entry, and a conditional reference no stored resource matches: both whole bundles rejected.
    _write_files(
        folder,
        {
            "p2.json": _patient_txn("00000000-0000-4000-8000-000000000002", status="bogus"),
            "p4.json": _patient_txn("00000000-0000-4000-8000-000000000004", practitioner="404"),
        },
    )
    store = SqliteStore(tmp_path / "s.db")
    summary = load_paths(store, [folder], validation="fast", workers=2)
    reasons = {Path(r.file).name: r.reason for r in summary.rejected}
    assert sorted(reasons) == ["p2.json", "p4.json"]
    assert "nothing stored" in reasons["p2.json"] and "Observation.status" in reasons["p2.json"]
    assert "matches no stored resource" in reasons["p4.json"]
    assert store.read("Patient", "00000000-0000-4000-8000-000000000002") is None
    assert store.read("Patient", "00000000-0000-4000-8000-000000000004") is None
    assert store.counts() == {"Observation": 4, "Patient": 4, "Practitioner": 1}
    store.close()


def test_same_bundle_twice_becomes_a_second_version(tmp_path: Path, folder: Path) -> None:
    (folder / "p9.json").write_bytes((folder / "p0.json").read_bytes())  # worker rows conflict: written as update
    store = SqliteStore(tmp_path / "s.db")
    summary = load_paths(store, [folder], validation="fast", workers=2)
    assert summary.rejected == []
    assert [v.version for v in store.history("Patient", "00000000-0000-4000-8000-000000000000")] == [2, 1]
    assert store.counts()["Patient"] == 6
    store.close()


def test_write_rows_refuses_existing_resources_and_rolls_back(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    store.write([{"resourceType": "Patient", "id": "p1"}])
    base, pids = store.row_plan()
    items = [
        prepare_resource({"resourceType": "Patient", "id": i, "gender": "male"}, "Patient", i) for i in ("p2", "p1")
    ]
    rows = decode(encode_rows(items, Counter(), base, pids))
    assert rows.resources is not None
    with pytest.raises(StoreError, match="already stored"):
        store.write_rows(rows.resources, rows.tables)
    assert store.read("Patient", "p2") is None  # rolled back
    fresh = decode(encode_rows(items[:1], Counter(), base, pids))
    assert fresh.resources is not None
    assert store.write_rows(fresh.resources, fresh.tables) == 1
    taken = decode(
        encode_rows([prepare_resource({"resourceType": "Patient", "id": "p3"}, "Patient", "p3")], Counter(), base, pids)
    )
    assert taken.resources is not None
    with pytest.raises(StoreError, match="rowid"):
        store.write_rows(taken.resources, taken.tables)
    assert store.read("Patient", "p2").body["gender"] == "male"  # type: ignore[union-attr]
    store.close()


def test_payload_roundtrip_keeps_rows_and_meta() -> None:
    resource = {
        "resourceType": "Observation",
        "id": "o1",
        "meta": {"profile": ["http://x/p"]},
        "status": "final",
        "code": {"text": "weight"},
        "subject": {"reference": "Patient/p1"},
    }
    item = prepare_resource(resource, "Observation", "o1")
    assert "meta" in resource  # the caller's dict is not changed
    assert '"meta"' not in item.body and item.meta == {"profile": ["http://x/p"]}
    back = decode(encode([item], Counter({"Device": 2})))
    assert back.items[0].index.reference == [tuple(r) for r in back.items[0].index.reference]
    assert back.items[0].index.patients == ["p1"]
    assert back.skipped == {"Device": 2}
    assert back.types() == ["Observation"]


def test_initial_load_only_into_an_empty_store(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    store.write([{"resourceType": "Patient", "id": "p1"}])
    with pytest.raises(InvalidInput, match="empty store"), store.initial_load():
        pass
    assert store._conn().execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL, untouched
    store.close()


@pytest.mark.shared
def test_synthea_pipeline_equals_plain_path(tmp_path: Path, synthea_dir: Path) -> None:
    """The whole sample: the same bodies, versions and index rows through workers + initial load as through write()."""
    plain = SqliteStore(tmp_path / "plain.db")
    fast = SqliteStore(tmp_path / "fast.db")
    files: list[int] = []
    real = fast.write_rows

    def spy(resources: Any, tables: Any) -> int:
        files.append(len(resources))
        return real(resources, tables)

    fast.write_rows = spy  # type: ignore[method-assign]
    a = load_paths(PlainStore(plain), [synthea_dir], validation="fast", workers=2)  # type: ignore[arg-type]
    b = load_paths(fast, [synthea_dir], validation="fast", workers=2)
    assert len(files) == 10  # every patient bundle came from a worker as final rows
    assert a.rejected == b.rejected == []
    assert a.loaded == b.loaded
    assert b.resources > 7000
    assert _snapshot(plain) == _snapshot(fast)
    queries = [
        ("Observation", [("code", "http://loinc.org|8302-2"), ("_count", "100")]),
        ("Encounter", [("date", "ge2015-01-01"), ("_count", "100")]),
        ("Practitioner", [("identifier", f"{NPI}|9999984591")]),
    ]
    for rtype, params in queries:
        ids = [[r.id for r in s.search(parse_search(rtype, params)).matches] for s in (plain, fast)]
        assert ids[0] == ids[1] and ids[0]
    plain.close()
    fast.close()


def test_reload_into_a_filled_store_updates_through_workers(tmp_path: Path, folder: Path) -> None:
    """Not an initial load: workers send PreparedResources and the writer turns them into second versions."""
    store = SqliteStore(tmp_path / "s.db")
    first = load_paths(store, [folder], validation="fast", workers=2)
    sizes: list[int] = []
    real = store.write_prepared

    def spy(items: Any) -> int:
        sizes.append(len(items))
        return real(items)

    store.write_prepared = spy  # type: ignore[method-assign]
    second = load_paths(store, [folder], validation="fast", workers=2)
    assert sizes == [1] + [2] * 6  # the practitioner file in this process, then six worker payloads
    assert first.rejected == second.rejected == []
    assert second.loaded == {"Patient": 6, "Observation": 6, "Practitioner": 1}
    assert store.read("Observation", "00000000-0000-4000-9000-000000000003").version == 2  # type: ignore[union-attr]
    assert store.counts() == {"Observation": 6, "Patient": 6, "Practitioner": 1}
    store.close()


def test_encrypted_store_loads_through_workers(tmp_path: Path, folder: Path) -> None:
    store = SqliteStore(tmp_path / "s.db", key="correct horse")
    summary = load_paths(store, [folder], validation="fast", workers=2)
    assert summary.rejected == []
    assert store.counts() == {"Observation": 6, "Patient": 6, "Practitioner": 1}
    store.close()
    with pytest.raises(StoreError):
        SqliteStore(tmp_path / "s.db")  # no key: the file really is encrypted
