"""Fixtures for analytics replica tests: a PostgreSQL location (a scratch schema, dropped after) with seed data."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from replica_support import PgPractice, seed

from fhirgate.location import open_location
from fhirgate.store.factory import open_store
from pg_server import drop_schema, location_url, scratch_schema


@pytest.fixture
def pg() -> Iterator[PgPractice]:
    """A fresh schema holding the handcrafted seed practice (replica_support.seed)."""
    schema = scratch_schema("fg_replica")
    try:
        location = open_location(location_url(schema)).ensure()
        store = open_store(location)
        try:
            store.write(seed())
            yield PgPractice(location, schema, store)
        finally:
            store.close()
    finally:
        drop_schema(schema)
