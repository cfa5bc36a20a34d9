"""SqliteStore specifics: encryption at rest, number search (no R4 number params in the supported types), bulk."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhirgate.core.fhir.indexing import IndexRows
from fhirgate.core.fhir.search import Clause, NumberValue, SearchQuery, parse_search
from fhirgate.core.fhir.search_values import parse_values
from fhirgate.errors import StoreError
from fhirgate.store.sqlite import SqliteStore


def test_encrypted_file_needs_the_key(tmp_path: Path) -> None:
    path = tmp_path / "enc.db"
    store = SqliteStore(path, key="right key")
    store.write([{"resourceType": "Patient", "id": "secret1", "name": [{"family": "Zebedee"}]}])
    store.close()
    raw = (
        path.read_bytes() + (tmp_path / "enc.db-wal").read_bytes()
        if (tmp_path / "enc.db-wal").exists()
        else path.read_bytes()
    )
    assert b"SQLite format 3" not in raw[:16]
    assert b"Zebedee" not in raw
    assert b"secret1" not in raw
    with pytest.raises(StoreError):
        SqliteStore(path, key="wrong key")
    with pytest.raises(StoreError):
        SqliteStore(path)
    again = SqliteStore(path, key="right key")
    got = again.read("Patient", "secret1")
    assert got is not None
    assert got.body["name"][0]["family"] == "Zebedee"
    again.close()


def test_plain_file_is_not_opened_with_a_key_silently(tmp_path: Path) -> None:
    path = tmp_path / "plain.db"
    SqliteStore(path).close()
    with pytest.raises(StoreError):
        SqliteStore(path, key="some key")


def test_closed_store_refuses(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "c.db")
    store.close()
    with pytest.raises(StoreError):
        store.read("Patient", "x")


def _number_query(raw: str) -> SearchQuery:
    values = tuple(v for v in parse_values("n", "number", None, raw) if isinstance(v, NumberValue))
    return SearchQuery("RiskAssessment", (Clause("n", "number", None, values),))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("100", ["a", "b"]),  # [99.5, 100.5)
        ("100.0", ["a"]),  # [99.95, 100.05)
        ("1e2", ["a", "b", "c"]),  # [50, 150)
        ("gt100", ["b", "c"]),
        ("ge100", ["a", "b", "c"]),
        ("lt100", []),
        ("le100.2", ["a", "b"]),
        ("ne100", ["c"]),
        ("ap130", ["c"]),
        ("sa100.4", ["c"]),
    ],
)
def test_number_semantics(tmp_path: Path, raw: str, expected: list[str]) -> None:
    store = SqliteStore(tmp_path / "n.db")
    rows = [IndexRows(number=[("n", 100.0)]), IndexRows(number=[("n", 100.2)]), IndexRows(number=[("n", 120.0)])]
    store.write([{"resourceType": "RiskAssessment", "id": i} for i in "abc"], index=rows)
    assert sorted(m.id for m in store.search(_number_query(raw)).matches) == expected
    store.close()


def test_bulk_mode_rebuilds_indexes(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "b.db")
    with store.bulk():
        store.write(
            [{"resourceType": "Patient", "id": f"p{i}", "gender": "male" if i % 2 else "female"} for i in range(50)]
        )
        during = store.search(parse_search("Patient", [("gender", "male"), ("_count", "100")]))
        assert len(during.matches) == 25  # correct (scans) while indexes are dropped
    after = store.search(parse_search("Patient", [("gender", "male"), ("_count", "100")]))
    assert len(after.matches) == 25
    names = {r[0] for r in store._conn().execute("SELECT name FROM sqlite_schema WHERE type='index'")}
    assert "ix_token_v" in names
    store.close()


def test_values_are_bound_not_interpolated(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "i.db")
    store.write([{"resourceType": "Patient", "id": "p1", "name": [{"family": "O'Brien"}]}])
    hostile = "x' OR 1=1 --"
    assert store.search(parse_search("Patient", [("name", hostile)])).matches == []
    assert [m.id for m in store.search(parse_search("Patient", [("name", "o'b")])).matches] == ["p1"]
    store.close()
