"""Fixtures for the saved-head tests: one audit chain per test, in a data directory or a PostgreSQL schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from anchor_support import Backend

from fhirgate.config import DataDir
from pg_server import drop_schema, location_url, postgres_reachable, scratch_schema


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """An empty audit chain; the PostgreSQL one skips when no server answers (tests/pg_server.py)."""
    if request.param == "sqlite":
        data = DataDir(tmp_path / "data").ensure()
        yield Backend("sqlite", str(data.path))
        return
    if not postgres_reachable():
        pytest.skip("no PostgreSQL server reachable at FHIRGATE_TEST_POSTGRES_URL")
    schema = scratch_schema("fg_anchor")
    try:
        yield Backend("postgres", location_url(schema), schema)
    finally:
        drop_schema(schema)
