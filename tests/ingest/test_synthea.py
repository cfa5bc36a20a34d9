"""The Synthea sample loads completely into a real SqliteStore: counts, rewritten and resolved references."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhirgate.core.fhir.validate import supported_types
from fhirgate.ingest.loader import load_paths
from fhirgate.ingest.report import LoadSummary

pytestmark = pytest.mark.shared

NPI = "http://hl7.org/fhir/sid/us-npi"


def _bundle_counts(synthea_dir: Path) -> tuple[Counter[str], Counter[str]]:
    stored: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    for path in sorted(synthea_dir.glob("*.json")):
        for entry in orjson.loads(path.read_bytes())["entry"]:
            rtype = entry["resource"]["resourceType"]
            (stored if rtype in supported_types() else skipped)[rtype] += 1
    return stored, skipped


@pytest.fixture(scope="module", params=["fast", pytest.param("full", marks=pytest.mark.slow)])
def loaded(
    request: pytest.FixtureRequest, synthea_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, LoadSummary]]:
    mod = pytest.importorskip("fhirgate.store.sqlite.store")
    store = mod.SqliteStore(tmp_path_factory.mktemp("synthea") / "store.db")
    summary = load_paths(store, [synthea_dir], validation=request.param)
    yield store, summary
    store.close()


def test_loads_completely(loaded: tuple[Any, LoadSummary], synthea_dir: Path) -> None:
    store, summary = loaded
    expected, skipped = _bundle_counts(synthea_dir)
    assert summary.rejected == []
    assert summary.files == 12
    assert store.counts() == dict(expected)
    assert dict(summary.loaded) == dict(expected)
    assert dict(summary.skipped) == dict(skipped)
    assert summary.resources == sum(expected.values()) > 7000


def test_no_urn_uuid_left_and_conditional_refs_resolved(loaded: tuple[Any, LoadSummary]) -> None:
    store, _ = loaded
    practitioner_ids = {r.id for r in store.iter_type("Practitioner")}
    seen_practitioner_refs = 0
    for rtype in ("Encounter", "Claim", "Observation", "DocumentReference", "Patient"):
        for stored in store.iter_type(rtype):
            text = orjson.dumps(stored.body).decode()
            # Identifier values may legitimately be urn:uuid URIs; references must not be.
            assert '"reference":"urn:uuid:' not in text
            assert "?identifier=" not in text
            for ref in re.findall(r'"reference":"Practitioner/([^"]+)"', text):
                assert ref in practitioner_ids
                seen_practitioner_refs += 1
    assert seen_practitioner_refs > 100


def test_ids_are_synthea_uuids_and_references_resolve(loaded: tuple[Any, LoadSummary], synthea_dir: Path) -> None:
    store, _ = loaded
    patient_file = next(p for p in sorted(synthea_dir.glob("*.json")) if "Information" not in p.name)
    first = orjson.loads(patient_file.read_bytes())["entry"][0]
    pid = first["fullUrl"].removeprefix("urn:uuid:")
    assert store.read("Patient", pid) is not None
    enc = next(r for r in store.iter_type("Encounter") if r.body["subject"]["reference"] == f"Patient/{pid}")
    assert enc.body["subject"]["reference"] == f"Patient/{pid}"
    npi_ids = store.find_ids("Practitioner", {"identifier": f"{NPI}|9999984591"})
    assert len(npi_ids) == 1
