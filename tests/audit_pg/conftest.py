"""Fixtures for the PostgreSQL audit tests: a PgAuditLog in its own schema, dropped afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from audit_pg_support import CHAIN_KEY, scratch_schema

from fhirgate.audit.pg_log import PgAuditLog
from pg_server import POSTGRES_URL, drop_schema, postgres_reachable


@pytest.fixture
def schema() -> Iterator[str]:
    """A fresh schema name, dropped (with all it holds) after the test."""
    if not postgres_reachable():
        pytest.skip("no PostgreSQL server reachable at FHIRGATE_TEST_POSTGRES_URL")
    name = scratch_schema()
    yield name
    drop_schema(name)


@pytest.fixture
def pg_log(schema: str) -> Iterator[PgAuditLog]:
    with PgAuditLog(POSTGRES_URL, schema=schema, chain_key=CHAIN_KEY) as opened:
        yield opened
