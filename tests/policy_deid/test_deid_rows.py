"""Tabular de-identification (SafeHarbor.rows) and column types derived from SQL-on-FHIR view columns."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fhirgate.core.policy.deid import SafeHarbor
from fhirgate.core.policy.pseudonym import Pseudonymizer
from fhirgate.core.policy.suppression import COLUMN_TYPES, column_types
from fhirgate.errors import InvalidInput

TODAY = dt.date(2025, 6, 30)
VIEWS = Path(__file__).resolve().parents[2] / "src" / "fhirgate" / "analytics" / "views" / "definitions"


@pytest.fixture
def harbor() -> SafeHarbor:
    return SafeHarbor(Pseudonymizer(b"r" * 32, "analyst"), today=TODAY)


def test_rows_by_column_type(harbor: SafeHarbor) -> None:
    rows = [
        {
            "id": "obs-1",
            "patient_id": "pat-1",
            "subject": "Patient/pat-1",
            "effective": "2023-01-16T14:11:00-06:00",
            "birth_date": "1933-02-09",
            "family": "Quintero",
            "display": "Systolic blood pressure",
            "code": "8480-6",
            "value": 101.5,
            "flag": True,
            "postal_code": "03601",
            "n": 4,
            "age": 93,
            "extra": "surprise",
        }
    ]
    columns = {
        "id": "id:Observation", "patient_id": "id:Patient", "subject": "reference", "effective": "dateTime",
        "birth_date": "birthDate", "family": "string", "display": "display", "code": "code", "value": "decimal",
        "flag": "boolean", "postal_code": "zip", "n": "count", "age": "age",
    }  # fmt: skip
    (out,), report = harbor.rows_with_report(rows, columns)
    pseudo = harbor.pseudo
    assert out["id"] == pseudo.pid("Observation", "obs-1")
    assert out["patient_id"] == pseudo.pid("Patient", "pat-1")
    assert out["subject"] == f"Patient/{out['patient_id']}"
    assert out["effective"] == "2023" and out["birth_date"] == "90+" and out["age"] == "90+"
    assert out["family"] is None and out["extra"] is None
    assert out["display"] == "Systolic blood pressure" and out["code"] == "8480-6"
    assert out["value"] == 101.5 and out["flag"] is True
    assert out["postal_code"] == "000" and out["n"] == "<11"
    assert report.removed["rows.family"] == {"R"} and report.generalized["rows.effective"] == {"C"}
    assert "rows.extra" in report.paths and "rows.patient_id" in report.pseudonymized
    assert harbor.rows(rows, columns) == [out]


def test_rows_patient_id_matches_resource_pseudonym(harbor: SafeHarbor) -> None:
    pat, _ = harbor.resource({"resourceType": "Patient", "id": "pat-7"})
    assert harbor.rows([{"patient_id": "pat-7"}], {"patient_id": "id:Patient"})[0]["patient_id"] == pat["id"]


def test_rows_display_scrubbed_and_bad_cells_dropped(harbor: SafeHarbor) -> None:
    rows: list[dict[str, Any]] = [
        {"d": "call 217-555-0101", "c": "a@b.example", "y": "not a date", "v": "12", "i": 12345},
        {"d": None, "c": None, "y": None, "v": None, "i": None},
    ]
    out = harbor.rows(rows, {"d": "display", "c": "code", "y": "date", "v": "decimal", "i": "id:Patient"})
    assert out[0] == {"d": "call [redacted]", "c": None, "y": None, "v": None, "i": None}
    assert out[1] == dict.fromkeys("dcyvi")


def test_rows_bad_arguments(harbor: SafeHarbor) -> None:
    with pytest.raises(InvalidInput):
        harbor.rows([{"a": 1}], {"a": "nonsense"})
    with pytest.raises(InvalidInput):
        harbor.rows([{"a": 1}], ["a"])  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        harbor.rows("abc", {"a": "code"})  # type: ignore[arg-type]
    assert harbor.rows([{"a": 1}, "junk"], {"a": "integer"}) == [{"a": 1}]  # type: ignore[list-item]


@dataclass(frozen=True)
class Col:
    name: str
    fhir_type: str | None
    path: str
    collection: bool = False


def _view_columns(name: str) -> tuple[str, list[Col]]:
    definition = json.loads((VIEWS / f"{name}.json").read_text())
    cols: list[Col] = []

    def walk(selects: list[dict[str, object]]) -> None:
        for select in selects or []:
            for col in select.get("column") or []:  # type: ignore[attr-defined]
                cols.append(Col(col["name"], col.get("type"), col.get("path", ""), bool(col.get("collection"))))
            walk(select.get("select") or [])  # type: ignore[arg-type]
            walk((select.get("unionAll") or [])[:1])  # type: ignore[index]

    walk(definition["select"])
    return definition["resource"], cols


def test_column_types_for_builtin_views() -> None:
    resource, cols = _view_columns("patient")
    types = column_types(cols, resource)
    assert types["id"] == "id:Patient" and types["general_practitioner_id"] == "id:Practitioner"
    assert types["family"] == "string" and types["given"] == "string" and types["mrn"] == "string"
    assert types["city"] == "string" and types["state"] == "state" and types["postal_code"] == "zip"
    assert types["birth_date"] == "birthDate" and types["gender"] == "code"
    resource, cols = _view_columns("observation")
    types = column_types(cols, resource)
    assert types["patient_id"] == "id:Patient" and types["system"] == "uri:system"
    assert types["display"] == "display" and types["unit"] == "display" and types["value_string"] == "string"
    resource, cols = _view_columns("coverage")
    assert column_types(cols, resource)["payor_name"] == "string"  # a Reference.display, not a code display
    assert column_types(cols, resource)["type_display"] == "display"


def test_column_types_cover_every_builtin_view() -> None:
    for path in sorted(VIEWS.glob("*.json")):
        resource, cols = _view_columns(path.stem)
        types = column_types(cols, resource)
        assert set(types) == {c.name for c in cols}
        assert all(t in COLUMN_TYPES or t.startswith("id:") for t in types.values())
        assert all(t.startswith("id:") for n, t in types.items() if n == "id" or n.endswith("_id")), path.stem
