"""Fixtures for RowScope tests: a demo practice (80 patients) written twice: whole, and without some patients."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from rowscope_support import PATIENTS, TODAY, Practice, excluded_set, write_store

from fhirgate.config import DataDir
from fhirgate.demo.generator import write_practice
from fhirgate.store.factory import open_store


@pytest.fixture(scope="session")
def whole(tmp_path_factory: pytest.TempPathFactory) -> Practice:
    data = DataDir(tmp_path_factory.mktemp("rowscope-whole")).ensure()
    store = open_store(data)
    try:
        write_practice(store, patients=PATIENTS, seed=7, today=TODAY)
    finally:
        store.close()
    return Practice(data)


@pytest.fixture(scope="session")
def without(whole: Practice, tmp_path_factory: pytest.TempPathFactory) -> Practice:
    """The same practice with every resource in the excluded patients' compartments never loaded."""
    gone: set[int] = set()
    for patient in excluded_set(whole):
        gone |= whole.compartment.get(patient, set())
    kept = [b for t, items in whole.by_type.items() for b in items if whole.rids[(t, b["id"])] not in gone]
    data = DataDir(tmp_path_factory.mktemp("rowscope-without")).ensure()
    write_store(data, kept)
    return Practice(data)


@pytest.fixture
def fresh(whole: Practice, tmp_path: Path) -> Iterator[Any]:
    """A private, writable copy of the whole practice's store."""
    src = open_store(DataDir(whole.path.parent), create=False)
    src._conn().execute("VACUUM INTO ?", (str(tmp_path / "store.db"),))  # type: ignore[attr-defined]
    src.close()
    store = open_store(DataDir(tmp_path), create=False)
    yield store
    store.close()
