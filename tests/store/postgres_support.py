"""PostgreSQL for the store tests: the server URL, a store in a throw-away schema, and the skip marker.

Imported by conftest.py and the PostgreSQL test modules (tests import this module, never `conftest`, whose
name other test folders share).
"""

from __future__ import annotations

import os
import secrets
from functools import cache
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from fhirgate.store.contract import FhirStore
from fhirgate.store.postgres import PostgresStore

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
