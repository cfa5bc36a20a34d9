"""PostgreSQL for the store tests: the server URL, a store in a throw-away schema, and the skip marker.

Imported by conftest.py and the PostgreSQL test modules (tests import this module, never `conftest`, whose
name other test folders share).
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from fhirgate.store.contract import FhirStore
from fhirgate.store.postgres import PostgresStore
from pg_server import POSTGRES_URL, drop_schema, needs_postgres


class ScratchPostgresStore(PostgresStore):
    """A PostgresStore in a fresh schema `fg_test_<hex>`, dropped when the store is closed."""

    def __init__(self) -> None:
        super().__init__(POSTGRES_URL, schema=f"fg_test_{secrets.token_hex(6)}")

    def close(self) -> None:
        super().close()
        drop_schema(self.schema)


def postgres_factory(_: Path) -> FhirStore:
    """An empty PostgresStore in its own schema."""
    return ScratchPostgresStore()


POSTGRES_FACTORY = pytest.param(postgres_factory, id="postgres", marks=needs_postgres)
