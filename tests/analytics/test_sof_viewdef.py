"""ViewDefinition validation: what the spec forbids raises ViewDefinitionError naming the JSON path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fhirgate.analytics.sof import ViewDefinitionError, ViewEvaluationError, compile_view, load_view, run_view
from fhirgate.errors import FhirgateError


def _view(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]}
    base.update(extra)
    return base


@pytest.mark.parametrize(
    ("data", "location"),
    [
        ({}, "resource"),
        ({"resource": "Patient"}, "select"),
        (_view(resource="Patients"), "resource"),
        (_view(resource="HumanName"), "resource"),
        (_view(name="1bad"), "name"),
        (_view(status="final"), "status"),
        (_view(select=[{"forEach": 1}]), "select[0].forEach"),
        (_view(select=[{"forEach": "@@"}]), "select[0].forEach"),
        (_view(select=[{"forEach": "name", "forEachOrNull": "name"}]), "select[0]"),
        (_view(select=[{"repeat": "item"}]), "select[0].repeat"),
        (_view(select=[{"column": [{"name": "a b", "path": "id"}]}]), "select[0].column[0].name"),
        (_view(select=[{"column": [{"name": "a"}]}]), "select[0].column[0].path"),
        (_view(select=[{"column": [{"name": "a", "path": "id", "collection": "yes"}]}]), "select[0].column[0]"),
        (_view(select=[{"column": [{"name": "a", "path": "id"}, {"name": "a", "path": "id"}]}]), "column[1].name"),
        (_view(select=[{"column": [{"name": "a", "path": "id"}]}, {"column": [{"name": "a", "path": "id"}]}]), "a"),
        (
            _view(
                select=[
                    {
                        "unionAll": [
                            {"column": [{"name": "a", "path": "id"}]},
                            {"column": [{"name": "b", "path": "id"}]},
                        ]
                    }
                ]
            ),
            "select[0].unionAll[1]",
        ),
        (_view(constant=[{"name": "c"}]), "constant[0]"),
        (_view(constant=[{"name": "c", "valueString": "a", "valueInteger": 1}]), "constant[0]"),
        (_view(constant=[{"name": "c", "valueInteger": "1"}]), "constant[0].valueInteger"),
        (_view(constant=[{"name": "c", "valueInteger": True}]), "constant[0].valueInteger"),
        (_view(constant=[{"name": "c", "valueFoo": 1}]), "constant[0].valueFoo"),
        (_view(where=[{"path": "name.where(use = %nope).exists()"}]), "where[0].path"),
        (_view(where=[{}]), "where[0].path"),
        (_view(where="active"), "where"),
    ],
)
def test_forbidden_views_name_the_location(data: dict[str, Any], location: str) -> None:
    with pytest.raises(ViewDefinitionError) as info:
        load_view(data)
    assert location in info.value.message
    assert info.value.code == "invalid-view"
    assert isinstance(info.value, FhirgateError)


def test_valid_view_exposes_columns_in_order() -> None:
    view = load_view(
        {
            "resourceType": "ViewDefinition",
            "name": "pt",
            "resource": "Patient",
            "constant": [{"name": "u", "valueString": "official"}],
            "select": [
                {"column": [{"name": "id", "path": "getResourceKey()", "type": "id"}]},
                {
                    "forEach": "name.where(use = %u)",
                    "column": [{"name": "given", "path": "given", "collection": True, "type": "string"}],
                    "unionAll": [
                        {"column": [{"name": "x", "path": "family"}]},
                        {"column": [{"name": "x", "path": "'y'"}]},
                    ],
                },
            ],
        }
    )
    assert view.name == "pt" and view.resource == "Patient"
    assert [(c.name, c.type, c.collection) for c in view.columns] == [
        ("id", "id", False),
        ("given", "string", True),
        ("x", None, False),
    ]


def test_load_view_from_file(tmp_path: Path) -> None:
    path = tmp_path / "v.json"
    path.write_text(json.dumps(_view()), encoding="utf-8")
    assert load_view(path).column_names == ["id"]
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ViewDefinitionError):
        load_view(path)
    with pytest.raises(ViewDefinitionError):
        load_view(tmp_path / "missing.json")


@pytest.mark.parametrize("force_fallback", [False, True])
def test_runtime_errors_name_the_resource_not_values(force_fallback: bool) -> None:
    patient = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Secret1"}, {"family": "Secret2"}]}
    view = load_view(_view(select=[{"column": [{"name": "fam", "path": "name.family"}]}]))
    with pytest.raises(ViewEvaluationError) as info:
        compile_view(view, force_fallback=force_fallback)(patient)
    assert "Patient/p1" in info.value.message and "collection" in info.value.message
    assert "Secret" not in info.value.message
    where_view = load_view(_view(where=[{"path": "name.family.first()"}]))
    with pytest.raises(ViewEvaluationError, match="boolean"):
        list(run_view(where_view, [patient], force_fallback=force_fallback))


def test_compile_view_skips_other_types_and_returns_tuples() -> None:
    fn = compile_view(
        load_view(_view(select=[{"column": [{"name": "id", "path": "id"}, {"name": "g", "path": "gender"}]}]))
    )
    assert fn({"resourceType": "Observation", "id": "o1"}) == []
    assert fn({"resourceType": "Patient", "id": "p1", "gender": "female"}) == [("p1", "female")]
    assert fn({"resourceType": "Patient", "id": "p2"}) == [("p2", None)]


@pytest.mark.parametrize("force_fallback", [False, True])
def test_reference_keys_join_with_resource_keys(force_fallback: bool) -> None:
    view = load_view(
        {
            "resource": "Observation",
            "select": [
                {
                    "column": [
                        {"name": "pt", "path": "subject.getReferenceKey(Patient)"},
                        {"name": "any", "path": "subject.getReferenceKey()"},
                        {"name": "enc", "path": "subject.getReferenceKey(Encounter)"},
                    ]
                }
            ],
        }
    )
    rows = compile_view(view, force_fallback=force_fallback)
    assert rows({"resourceType": "Observation", "subject": {"reference": "Patient/p1"}}) == [("p1", "p1", None)]
    assert rows(
        {"resourceType": "Observation", "subject": {"reference": "https://x.org/fhir/Patient/p2/_history/3"}}
    ) == [("p2", "p2", None)]
    assert rows({"resourceType": "Observation", "subject": {"reference": "#contained"}}) == [(None, None, None)]
    assert rows({"resourceType": "Observation", "subject": {"reference": "urn:uuid:abc"}}) == [("abc", "abc", "abc")]
    typed = {"resourceType": "Observation", "subject": {"reference": "urn:uuid:abc", "type": "Group"}}
    assert rows(typed) == [(None, "abc", None)]
