"""Fixtures for terminology tests: a small demo practice (ICD-10-CM) and a few Synthea bundles (SNOMED, LOINC...)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from terminology_support import EXTRA_CONDITIONS

from fhirgate.app import build_gateway
from fhirgate.config import DataDir
from fhirgate.demo.generator import write_practice
from fhirgate.ingest.loader import load_paths
from fhirgate.service.gateway import Gateway
from fhirgate.store.factory import open_store
from fhirgate.terminology.lookup import Terminology


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> DataDir:
    """30 demo patients plus a few hand-made Conditions (a large ICD-10-CM category, an undotted code)."""
    data = DataDir(tmp_path_factory.mktemp("terminology-demo")).ensure()
    store = open_store(data)
    try:
        write_practice(store, patients=30, seed=11, today=dt.date(2026, 3, 2))
        patient = sorted(r.id for r in store.iter_type("Patient"))[0]
        store.write([{**c, "subject": {"reference": f"Patient/{patient}"}} for c in EXTRA_CONDITIONS])
    finally:
        store.close()
    return data


@pytest.fixture(scope="session")
def demo_gateway(demo_dir: DataDir) -> Iterator[Gateway]:
    gw = build_gateway(demo_dir, key=None)
    yield gw
    gw.close()


@pytest.fixture(scope="session")
def synthea_data(tmp_path_factory: pytest.TempPathFactory, synthea_dir: Path) -> DataDir:
    """Three Synthea patients (with the hospital and practitioner bundles) in a new store."""
    data = DataDir(tmp_path_factory.mktemp("terminology-synthea")).ensure()
    store = open_store(data)
    try:
        files = [synthea_dir / "hospitalInformation.json", synthea_dir / "practitionerInformation.json"]
        files += sorted(p for p in synthea_dir.glob("*.json") if "Information" not in p.name)[:3]
        load_paths(store, files, validation="fast")
    finally:
        store.close()
    return data


@pytest.fixture(scope="session")
def synthea_gateway(synthea_data: DataDir) -> Iterator[Gateway]:
    gw = build_gateway(synthea_data, key=None)
    yield gw
    gw.close()


@pytest.fixture(scope="session")
def offline() -> Terminology:
    """ICD-10-CM and the curated synonyms only (no store)."""
    term = Terminology()
    term.warm()
    return term
