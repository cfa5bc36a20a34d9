"""Contract: the Synthea sample round-trips (written as-is; resolving urn:uuid references is the loader's job)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from fhirgate.core.fhir.definitions import is_supported
from fhirgate.core.fhir.extract import extract
from fhirgate.core.fhir.search import parse_search
from fhirgate.store.contract import FhirStore

pytestmark = pytest.mark.shared


def _resources(folder: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.json")):
        out += [e["resource"] for e in orjson.loads(path.read_bytes())["entry"]]
    return [r for r in out if is_supported(r["resourceType"])]


def test_synthea_round_trip(store: FhirStore, synthea_dir: Path) -> None:
    resources = _resources(synthea_dir)
    index = [extract(r) for r in resources]
    for start in range(0, len(resources), 2000):
        store.write(resources[start : start + 2000], index=index[start : start + 2000])
    expected: dict[str, int] = {}
    for r in resources:
        expected[r["resourceType"]] = expected.get(r["resourceType"], 0) + 1
    assert store.counts() == expected
    for original in resources[:: max(1, len(resources) // 50)]:
        got = store.read(original["resourceType"], original["id"])
        assert got is not None
        body = dict(got.body)
        meta = dict(body.pop("meta"))
        assert meta.pop("versionId") == "1"
        assert meta.pop("lastUpdated") == got.last_updated
        source = dict(original)
        assert meta == source.pop("meta", {})
        assert body == source

    patients = [r for r in resources if r["resourceType"] == "Patient"]
    assert len(patients) == 10
    pid = patients[0]["id"]
    # Compartment membership comes from extract: every indexed member is found by one lookup.
    members = sum(1 for ix in index if pid in ix.patients)
    page = store.compartment_page(pid, count=100)
    assert page.total == members
    assert page.matches[0].ref == f"Patient/{pid}"
    # Synthea references are urn:uuid, so reference search by id finds nothing until a loader resolves them,
    # but token and date search work on the raw sample.
    final = store.search(parse_search("Observation", [("status", "final"), ("_summary", "count")]))
    assert final.total == sum(1 for r in resources if r["resourceType"] == "Observation" and r["status"] == "final")
    family = patients[0]["name"][0]["family"]
    named = store.search(parse_search("Patient", [("family:exact", family)]))
    assert pid in {m.id for m in named.matches}
