"""Fixtures for the many-workers tests: a reachable Redis (else skip) and a shared small demo directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from workers_support import make_demo

from fhirgate.config import DataDir


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> DataDir:
    """A 5-patient demo directory for the configuration tests (no server runs on it)."""
    return make_demo(tmp_path_factory.mktemp("workers-demo") / "data", patients=5)


@pytest.fixture
def data_path(small_demo: DataDir) -> Path:
    return small_demo.path
