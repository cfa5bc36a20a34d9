"""The `store` fixture: every FhirStore implementation runs the same contract suite.

To add a backend, append one `pytest.param(factory, id=...)` to STORE_FACTORIES; a factory takes a
temporary directory and returns an empty store.

PostgreSQL runs against FHIRGATE_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test),
each store in its own fresh schema dropped on close; skipped when no server is reachable, except in CI
(FHIRGATE_REQUIRE_POSTGRES=1), where that is an error.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from fhirgate.store.contract import FhirStore
from fhirgate.store.postgres import PostgresStore
from fhirgate.store.sqlite import SqliteStore

StoreFactory = Callable[[Path], FhirStore]

POSTGRES_URL = os.environ.get("FHIRGATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@cache
def postgres_reachable() -> bool:
    """True when a PostgreSQL server answers at POSTGRES_URL."""
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


class ScratchPostgresStore(PostgresStore):
    """A PostgresStore in a fresh schema `fg_test_<hex>`, dropped when the store is closed."""

    def __init__(self) -> None:
        super().__init__(POSTGRES_URL, schema=f"fg_test_{secrets.token_hex(6)}")

    def close(self) -> None:
        super().close()
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema)))


def postgres_factory(_: Path) -> FhirStore:
    """An empty PostgresStore in its own schema."""
    return ScratchPostgresStore()


# CI (.ci/run) sets FHIRGATE_REQUIRE_POSTGRES=1: there an unreachable server fails the suite instead of skipping it.
if os.environ.get("FHIRGATE_REQUIRE_POSTGRES") == "1" and not postgres_reachable():
    raise RuntimeError("FHIRGATE_REQUIRE_POSTGRES=1 but no PostgreSQL server answers at FHIRGATE_TEST_POSTGRES_URL")
needs_postgres = pytest.mark.skipif(
    not postgres_reachable(), reason="no PostgreSQL server reachable at FHIRGATE_TEST_POSTGRES_URL"
)
POSTGRES_FACTORY = pytest.param(postgres_factory, id="postgres", marks=needs_postgres)

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
