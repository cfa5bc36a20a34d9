"""The PostgreSQL server for tests that need one: its URL, the skip marker, and throw-away schemas.

Tests skip when no server answers at $FHIRGATE_TEST_POSTGRES_URL, except with FHIRGATE_REQUIRE_POSTGRES=1
(set by .ci/run), where an unreachable server fails the run instead. Importable from every test folder
(tests/ is on sys.path through the root conftest).
"""

from __future__ import annotations

import os
import secrets
from functools import cache

import psycopg
import pytest
from psycopg import sql

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


if os.environ.get("FHIRGATE_REQUIRE_POSTGRES") == "1" and not postgres_reachable():
    raise RuntimeError("FHIRGATE_REQUIRE_POSTGRES=1 but no PostgreSQL server answers at FHIRGATE_TEST_POSTGRES_URL")
needs_postgres = pytest.mark.skipif(
    not postgres_reachable(), reason="no PostgreSQL server reachable at FHIRGATE_TEST_POSTGRES_URL"
)


def scratch_schema(prefix: str = "fg_test") -> str:
    """A fresh schema name for one test (nothing is created yet)."""
    return f"{prefix}_{secrets.token_hex(6)}"


def location_url(schema: str) -> str:
    """The `--data` URL of a PostgreSQL location in `schema`."""
    sep = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{sep}schema={schema}"


def drop_schema(schema: str) -> None:
    """Drop a test schema and everything in it."""
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
