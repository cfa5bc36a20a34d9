"""Shared fixtures: the ../shared reference folder (skipped with a clear message when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ../shared folder beside the checkout; tests that need it skip when it is absent."""
    if not (SHARED / "data" / "synthea").is_dir():
        pytest.skip(f"../shared not found at {SHARED}: Synthea sample and conformance suites unavailable")
    return SHARED


@pytest.fixture(scope="session")
def synthea_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "synthea"
