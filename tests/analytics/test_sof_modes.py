"""The compiled fast path and the fhirpathpy fallback give identical rows on real Synthea data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fhirgate.analytics.sof import ViewPlan, load_view
from fhirgate.analytics.sof.compile import Compiler, Unsupported

VIEWS: list[dict[str, Any]] = [
    {
        "resource": "Observation",
        "where": [{"path": "status = 'final' or status = 'amended'"}],
        "select": [
            {
                "column": [
                    {"name": "id", "path": "getResourceKey()"},
                    {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
                    {"name": "category", "path": "category.coding.code.first()"},
                    {"name": "code", "path": "code.coding.first().code"},
                    {"name": "codes", "path": "code.coding.code", "collection": True},
                    {"name": "effective", "path": "effective.ofType(dateTime)"},
                    {"name": "eff_low", "path": "effective.ofType(dateTime).lowBoundary()"},
                    {"name": "value", "path": "value.ofType(Quantity).value"},
                    {"name": "value_high", "path": "value.ofType(Quantity).value.highBoundary()"},
                    {"name": "big", "path": "value.ofType(Quantity).value > 100"},
                    {"name": "has_cc", "path": "value.ofType(CodeableConcept).exists()"},
                ]
            },
            {
                "forEachOrNull": "component",
                "column": [
                    {"name": "idx", "path": "%rowIndex"},
                    {"name": "comp", "path": "code.coding.where(system = 'http://loinc.org').code.first()"},
                    {"name": "comp_value", "path": "value.ofType(Quantity).value"},
                ],
            },
        ],
    },
    {
        "resource": "Patient",
        "select": [
            {
                "column": [
                    {"name": "id", "path": "id"},
                    {"name": "birth_high", "path": "birthDate.highBoundary()"},
                    {"name": "deceased", "path": "deceased.exists()"},
                    {"name": "not_male", "path": "(gender = 'male').not()"},
                    {
                        "name": "race",
                        "path": "extension('http://hl7.org/fhir/us/core/StructureDefinition/us-core-race')"
                        ".extension('ombCategory').value.ofType(Coding).code.first()",
                    },
                ]
            },
            {
                "forEach": "name",
                "column": [{"name": "given", "path": "given.join(' ')"}, {"name": "n", "path": "%rowIndex"}],
            },
            {
                "forEachOrNull": "address",
                "column": [{"name": "city", "path": "city"}, {"name": "line0", "path": "line[0]"}],
            },
        ],
    },
    {
        "resource": "Encounter",
        "select": [
            {
                "column": [
                    {"name": "id", "path": "id"},
                    {"name": "start", "path": "period.start"},
                    {"name": "type", "path": "type.coding.display.join('|')"},
                    {"name": "practitioner", "path": "participant.individual.getReferenceKey(Practitioner).first()"},
                ]
            }
        ],
    },
]


@pytest.fixture(scope="module")
def sample(synthea_dir: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(synthea_dir.glob("*.json"))[:4]:
        bundle = json.loads(path.read_text(encoding="utf-8"))
        out.extend(e["resource"] for e in bundle["entry"])
    by_type: dict[str, list[dict[str, Any]]] = {}
    for resource in out:
        by_type.setdefault(resource["resourceType"], []).append(resource)
    return [r for rs in by_type.values() for r in rs[:120]]


@pytest.mark.parametrize("index", range(len(VIEWS)))
def test_compiled_and_fallback_agree_on_synthea(sample: list[dict[str, Any]], index: int) -> None:
    view = load_view(VIEWS[index])
    fast, slow = ViewPlan(view), ViewPlan(view, force_fallback=True)
    assert fast.fallback_count == 0, "these views are meant to be fully compiled"
    mine = [r for r in sample if r["resourceType"] == view.resource]
    assert mine
    total = 0
    for resource in mine:
        rows = fast(resource)
        assert rows == slow(resource), resource["id"]
        total += len(rows)
    assert total >= len(mine) // 2


@pytest.mark.parametrize(
    "expression",
    [
        "name.family + 'x'",
        "name.select(family)",
        "telecom | contact.telecom",
        "birthDate = @2000-01-01",
        "%resource.id",
    ],
)
def test_outside_the_subset_falls_back(expression: str) -> None:
    with pytest.raises(Unsupported):
        Compiler({}).compile(expression, "Patient")


def test_mixed_view_runs_fallback_expressions_on_compiled_foci() -> None:
    view = load_view(
        {
            "resource": "Patient",
            "select": [{"forEach": "contact", "column": [{"name": "n", "path": "name.family | name.given"}]}],
        }
    )
    plan = ViewPlan(view)
    assert plan.compiled_count == 1 and plan.fallback_count == 1
    patient = {"resourceType": "Patient", "contact": [{"name": {"family": "F"}}]}
    assert plan(patient) == [("F",)]
