"""Fixtures for safe-write tests: a controllable clock and a fresh proposal store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from writes_helpers import MAC_KEY, Clock

from fhirgate.writes.approvals import ProposalStore


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "proposals.db"


@pytest.fixture
def store(store_path: Path, clock: Clock) -> Iterator[ProposalStore]:
    with ProposalStore(store_path, mac_key=MAC_KEY, clock=clock) as opened:
        yield opened
