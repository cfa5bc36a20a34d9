"""The `store` fixture: every FhirStore implementation runs the same contract suite.

To add a backend, append one `pytest.param(factory, id=...)` to STORE_FACTORIES; a factory takes a
temporary directory and returns an empty store.

PostgreSQL runs against FHIRGATE_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test),
each store in its own fresh schema dropped on close; skipped when no server is reachable, except in CI
(FHIRGATE_REQUIRE_POSTGRES=1), where that is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from postgres_support import POSTGRES_FACTORY

from fhirgate.store.contract import FhirStore
from fhirgate.store.sqlite import SqliteStore

StoreFactory = Callable[[Path], FhirStore]

STORE_FACTORIES = [
    pytest.param(lambda d: SqliteStore(d / "store.db"), id="sqlite"),
    pytest.param(lambda d: SqliteStore(d / "store.db", key="test-key-1"), id="sqlite-encrypted"),
    POSTGRES_FACTORY,
]


@pytest.fixture(params=STORE_FACTORIES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FhirStore]:
    """An empty store of each implementation, closed afterwards."""
    factory: StoreFactory = request.param
    instance = factory(tmp_path)
    assert isinstance(instance, FhirStore)
    yield instance
    instance.close()


@pytest.fixture(scope="module", params=STORE_FACTORIES)
def shared_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirStore]:
    """One empty store per implementation shared by a module's read-only tests (faster than one per test)."""
    factory: StoreFactory = request.param
    instance = factory(tmp_path_factory.mktemp("store"))
    yield instance
    instance.close()
