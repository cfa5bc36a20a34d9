"""Fixtures for the proposal-store tests run on both backends: a clock and a store, SQLite or PostgreSQL."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent
for folder in (HERE, HERE.parent / "writes"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from pg_proposals_support import BACKENDS, Backend  # noqa: E402 - after the path set-up above
from writes_helpers import Clock  # noqa: E402


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[Backend]:
    """A fresh proposal store on each backend (PostgreSQL in a throw-away schema), with a raw-SQL editor."""
    opened: Backend = request.param(tmp_path, clock)
    yield opened
    opened.close()
