"""Benchmark: SQL on FHIR view rows per second over the Synthea sample (compiled fast path vs fhirpathpy).

Usage: python benchmarks/sof_rows.py [SYNTHEA_DIR] [--repeat N] [--fallback]
References are first rewritten from `urn:uuid:` to `Type/id`, as the loader does. Reports, per view, the rows,
resources, best-of-N seconds for a full rebuild (compile_view over every resource) and rows/s, and the mean
microseconds per resource (the incremental cost of one written resource).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from fhirgate.analytics.sof import ViewPlan, load_view

DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "synthea"

OBSERVATION_VIEW: dict[str, Any] = {
    "resourceType": "ViewDefinition",
    "name": "observation_flat",
    "resource": "Observation",
    "status": "active",
    "where": [{"path": "status = 'final' or status = 'amended'"}],
    "select": [
        {
            "column": [
                {"name": "id", "path": "getResourceKey()", "type": "id"},
                {"name": "patient_id", "path": "subject.getReferenceKey(Patient)", "type": "id"},
                {"name": "encounter_id", "path": "encounter.getReferenceKey(Encounter)", "type": "id"},
                {"name": "status", "path": "status", "type": "code"},
                {"name": "category", "path": "category.coding.code.first()", "type": "code"},
                {"name": "code_system", "path": "code.coding.first().system", "type": "uri"},
                {"name": "code", "path": "code.coding.first().code", "type": "code"},
                {"name": "display", "path": "code.text", "type": "string"},
                {"name": "effective", "path": "effective.ofType(dateTime)", "type": "dateTime"},
                {"name": "value", "path": "value.ofType(Quantity).value", "type": "decimal"},
                {"name": "unit", "path": "value.ofType(Quantity).code", "type": "code"},
                {"name": "value_code", "path": "value.ofType(CodeableConcept).coding.first().code", "type": "code"},
            ]
        }
    ],
}

COMPONENT_VIEW: dict[str, Any] = {
    "resourceType": "ViewDefinition",
    "name": "observation_component",
    "resource": "Observation",
    "select": [
        {"column": [{"name": "id", "path": "getResourceKey()"}, {"name": "code", "path": "code.coding.first().code"}]},
        {
            "forEach": "component",
            "column": [
                {"name": "idx", "path": "%rowIndex", "type": "integer"},
                {"name": "component_code", "path": "code.coding.where(system = 'http://loinc.org').code.first()"},
                {"name": "value", "path": "value.ofType(Quantity).value"},
                {"name": "unit", "path": "value.ofType(Quantity).unit"},
            ],
        },
    ],
}

PATIENT_VIEW: dict[str, Any] = {
    "resourceType": "ViewDefinition",
    "name": "patient_names",
    "resource": "Patient",
    "select": [
        {
            "column": [
                {"name": "id", "path": "getResourceKey()"},
                {"name": "gender", "path": "gender"},
                {"name": "birth_date", "path": "birthDate"},
                {"name": "deceased", "path": "deceased.exists()"},
                {
                    "name": "race",
                    "path": "extension('http://hl7.org/fhir/us/core/StructureDefinition/us-core-race')"
                    ".extension('ombCategory').value.ofType(Coding).code.first()",
                },
            ]
        },
        {
            "forEachOrNull": "name",
            "column": [
                {"name": "use", "path": "use"},
                {"name": "family", "path": "family"},
                {"name": "given", "path": "given.join(' ')"},
            ],
        },
    ],
}


def _rewrite(node: Any, urls: dict[str, str]) -> None:
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str) and ref in urls:
            node["reference"] = urls[ref]
        for value in node.values():
            _rewrite(value, urls)
    elif isinstance(node, list):
        for value in node:
            _rewrite(value, urls)


def load(directory: Path) -> list[dict[str, Any]]:
    """Every resource of every bundle in the directory, references made relative."""
    bundles = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.json"))]
    urls = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}" for b in bundles for e in b["entry"]}
    out = [e["resource"] for b in bundles for e in b["entry"]]
    for resource in out:
        _rewrite(resource, urls)
    return out


def measure(view_json: dict[str, Any], resources: list[dict[str, Any]], repeat: int, fallback: bool) -> dict[str, Any]:
    """Best-of-`repeat` full rebuild time and rows for one view."""
    view = load_view(view_json)
    plan = ViewPlan(view, force_fallback=fallback)
    mine = [r for r in resources if r.get("resourceType") == view.resource]
    best = float("inf")
    rows = 0
    for _ in range(repeat):
        start = time.perf_counter()
        rows = 0
        for resource in mine:
            rows += len(plan(resource))
        best = min(best, time.perf_counter() - start)
    return {
        "view": view.name,
        "mode": "fallback" if fallback else "compiled",
        "compiled_expressions": plan.compiled_count,
        "fallback_expressions": plan.fallback_count,
        "resources": len(mine),
        "rows": rows,
        "seconds": round(best, 4),
        "rows_per_s": round(rows / best) if best else None,
        "us_per_resource": round(best / max(len(mine), 1) * 1e6, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", default=str(DEFAULT_DIR))
    parser.add_argument("--repeat", type=int, default=30, help="best of N full passes (default 30)")
    parser.add_argument("--fallback", action="store_true", help="also time the fhirpathpy-only mode (slow)")
    args = parser.parse_args(argv)
    resources = load(Path(args.directory))
    for view_json in (OBSERVATION_VIEW, COMPONENT_VIEW, PATIENT_VIEW):
        print(json.dumps(measure(view_json, resources, args.repeat, False)))
        if args.fallback:
            print(json.dumps(measure(view_json, resources[:20000], 1, True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
