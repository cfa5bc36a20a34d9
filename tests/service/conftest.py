"""Fixtures for service tests (data and helpers live in practice_data.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from practice_data import Practice, load_practice

from fhirgate.app import build_gateway
from fhirgate.service.gateway import Gateway


@pytest.fixture(scope="session")
def practice(tmp_path_factory: pytest.TempPathFactory, synthea_dir: Path) -> Practice:
    return load_practice(tmp_path_factory.mktemp("practice"), synthea_dir)


@pytest.fixture(scope="session")
def gateway(practice: Practice) -> Iterator[Gateway]:
    gw = build_gateway(practice.data_dir, key=None)
    yield gw
    gw.close()
