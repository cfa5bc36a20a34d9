"""Fixtures for ingest tests: a small in-memory FhirStore fake, and the real SqliteStore when present."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from fhirgate.errors import StoreError
from fhirgate.store.contract import StoredResource


class FakeStore:
    """Just enough of the FhirStore Protocol for the loader: atomic write, delete, find_ids, counts."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], dict[str, Any]] = {}
        self.versions: dict[tuple[str, str], int] = {}
        self.writes = 0
        self.fail_when: Callable[[dict[str, Any]], bool] | None = None

    def write(
        self, resources: Sequence[dict[str, Any]], *, index: Any = None, expect: Any = None, precondition: Any = None
    ) -> list[StoredResource]:
        for r in resources:
            if "id" not in r or "resourceType" not in r:
                raise StoreError("resource needs resourceType and id")
            if self.fail_when is not None and self.fail_when(r):
                raise StoreError("simulated failure")
        self.writes += 1
        out = []
        for r in resources:
            key = (r["resourceType"], r["id"])
            self.versions[key] = self.versions.get(key, 0) + 1
            self.data[key] = copy.deepcopy(r)
            out.append(StoredResource(key[0], key[1], self.versions[key], "", self.data[key]))
        return out

    def delete(self, resource_type: str, id: str, *, expect_version: int | None = None) -> bool:
        return self.data.pop((resource_type, id), None) is not None

    def read(self, resource_type: str, id: str) -> StoredResource | None:
        body = self.data.get((resource_type, id))
        if body is None:
            return None
        return StoredResource(resource_type, id, self.versions[(resource_type, id)], "", body)

    def find_ids(self, resource_type: str, params: Mapping[str, str]) -> list[str]:
        (name, value), *rest = params.items()
        assert not rest
        assert name == "identifier"
        system, _, code = value.partition("|")
        return [
            rid
            for (rtype, rid), body in self.data.items()
            if rtype == resource_type
            and any(i.get("system") == system and i.get("value") == code for i in body.get("identifier", []))
        ]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for rtype, _ in self.data:
            out[rtype] = out.get(rtype, 0) + 1
        return out

    def iter_type(self, resource_type: str) -> Iterator[StoredResource]:
        for (rtype, rid), body in self.data.items():
            if rtype == resource_type:
                yield StoredResource(rtype, rid, self.versions[(rtype, rid)], "", body)

    def close(self) -> None:
        pass


@pytest.fixture
def fake_store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Any]:
    """The real SqliteStore in a temp dir; skips until store/sqlite/store.py exists."""
    mod = pytest.importorskip("fhirgate.store.sqlite.store")
    store = mod.SqliteStore(tmp_path / "store.db")
    yield store
    store.close()
