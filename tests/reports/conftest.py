"""Fixtures for report tests: a generated demo practice, its raw resources, gateways and principals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from report_oracle import DEMO_TODAY, Raw

from fhirgate.app import build_gateway
from fhirgate.config import DataDir
from fhirgate.demo.generator import DemoSummary, write_practice
from fhirgate.service.gateway import Gateway
from fhirgate.store.factory import open_store

TODAY = DEMO_TODAY
PATIENTS = 120
RAW_TYPES = ("Patient", "Practitioner", "Appointment", "Encounter", "Claim", "Invoice", "Condition", "Observation")


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[DataDir, DemoSummary]:
    """A demo practice of 120 patients anchored at TODAY (its views are built as it is written)."""
    data = DataDir(tmp_path_factory.mktemp("report-demo")).ensure()
    store = open_store(data)
    try:
        summary = write_practice(store, patients=PATIENTS, seed=7, today=TODAY)
    finally:
        store.close()
    return data, summary


@pytest.fixture(scope="session")
def raw(demo_dir: tuple[DataDir, DemoSummary]) -> Raw:
    """The demo's raw FHIR JSON, read straight from the store (not from the view tables)."""
    store = open_store(demo_dir[0], create=False)
    try:
        by_type: dict[str, list[dict[str, Any]]] = {t: [s.body for s in store.iter_type(t)] for t in RAW_TYPES}
    finally:
        store.close()
    return Raw(by_type)


@pytest.fixture(scope="session")
def gateway(demo_dir: tuple[DataDir, DemoSummary]) -> Iterator[Gateway]:
    gw = build_gateway(demo_dir[0], key=None)
    yield gw
    gw.close()


@pytest.fixture
def edge_dir(tmp_path: Path) -> DataDir:
    return DataDir(tmp_path / "edge").ensure()
