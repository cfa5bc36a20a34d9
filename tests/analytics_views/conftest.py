"""Fixtures for the materialized views: a small demo practice in a store that keeps the views current."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import standin_sof

standin_sof.install()  # no-op once the real engine (fhirgate.analytics.sof) imports

from fhirgate.analytics.views.maintenance import PracticeViews  # noqa: E402
from fhirgate.demo.generator import write_practice  # noqa: E402
from fhirgate.store.sqlite.store import SqliteStore  # noqa: E402

TODAY = dt.date(2026, 7, 1)
PATIENTS = 12


@pytest.fixture(scope="module")
def practice_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding store.db: the demo practice written through a view-maintaining store."""
    path = tmp_path_factory.mktemp("practice")
    store = SqliteStore(path / "store.db", derived=PracticeViews())
    try:
        write_practice(store, patients=PATIENTS, seed=7, today=TODAY)
    finally:
        store.close()
    return path


@pytest.fixture(scope="module")
def practice(practice_dir: Path) -> Iterator[SqliteStore]:
    """The demo practice store (read-only use)."""
    store = SqliteStore(practice_dir / "store.db", derived=PracticeViews())
    yield store
    store.close()


@pytest.fixture
def fresh(tmp_path: Path, practice_dir: Path) -> Iterator[SqliteStore]:
    """A private copy of the demo practice, for tests that write."""
    src = SqliteStore(practice_dir / "store.db", create=False)
    src._conn().execute("VACUUM INTO ?", (str(tmp_path / "store.db"),))
    src.close()
    store = SqliteStore(tmp_path / "store.db", derived=PracticeViews())
    yield store
    store.close()
