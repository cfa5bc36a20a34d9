"""Compact output, one-line summaries and FHIR _elements/_summary subsetting."""

from __future__ import annotations

import copy
import statistics
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhirgate.core.fhir.compact import (
    SUBSETTED_SYSTEM,
    apply_elements,
    compact,
    summary_mode,
)
from fhirgate.core.fhir.facts import summary_line
from fhirgate.errors import InvalidInput

A1C: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "abc",
    "meta": {"versionId": "3", "profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-lab"]},
    "text": {"status": "generated", "div": "<div xmlns='http://www.w3.org/1999/xhtml'>HbA1c 7.2 %</div>"},
    "extension": [{"url": "http://example.org/x", "valueString": "ext"}],
    "status": "final",
    "_status": {"extension": [{"url": "http://example.org/y", "valueString": "primitive ext"}]},
    "category": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "laboratory",
                    "display": "Laboratory",
                }
            ]
        }
    ],
    "code": {
        "coding": [{"system": "http://loinc.org", "code": "4548-4", "display": "Hemoglobin A1c/Hemoglobin.total"}],
        "text": "Hemoglobin A1c",
    },
    "subject": {"reference": "Patient/p1", "display": "Jane Doe"},
    "effectiveDateTime": "2024-05-01T09:30:00Z",
    "valueQuantity": {"value": 7.2, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
    "referenceRange": [
        {"id": "rr1", "low": {"value": 4, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}}
    ],
}


def test_observation_compact_shape_is_exact() -> None:
    assert compact(A1C) == {
        "resourceType": "Observation",
        "id": "abc",
        "status": "final",
        "category": [
            {"codes": ["http://terminology.hl7.org/CodeSystem/observation-category|laboratory"], "text": "Laboratory"}
        ],
        "code": {"codes": ["http://loinc.org|4548-4"], "text": "Hemoglobin A1c"},
        "subject": {"ref": "Patient/p1", "display": "Jane Doe"},
        "effectiveDateTime": "2024-05-01T09:30:00Z",
        "valueQuantity": {"value": 7.2, "unit": "%"},
        "referenceRange": [{"low": {"value": 4, "unit": "%"}}],
    }


def test_compact_does_not_mutate_input() -> None:
    before = copy.deepcopy(A1C)
    compact(A1C, elements=["extension", "meta", "text"])
    summary_mode(A1C, "true")
    apply_elements(A1C, ["code"])
    assert before == A1C


def test_patient_datatypes_flatten() -> None:
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [
            {
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                "system": "http://hospital.example.org",
                "value": "MRN-1",
            }
        ],
        "name": [
            {"use": "official", "prefix": ["Mrs."], "given": ["Jane", "Q"], "family": "Doe"},
            {"use": "maiden", "given": ["Jane"], "family": "Roe"},
        ],
        "telecom": [{"system": "phone", "value": "555-0100", "use": "home"}, {"system": "email", "value": "j@x.org"}],
        "address": [{"line": ["1 Main St", "Apt 2"], "city": "Boston", "state": "MA", "postalCode": "02101"}],
        "maritalStatus": {"text": "Married"},
        "communication": [{"language": {"coding": [{"code": "en"}]}}],
        "generalPractitioner": [{"identifier": {"system": "http://hl7.org/fhir/sid/us-npi", "value": "9999"}}],
    }
    out = compact(patient)
    assert out["identifier"] == [
        {
            "value": "http://hospital.example.org|MRN-1",
            "type": {"codes": ["http://terminology.hl7.org/CodeSystem/v2-0203|MR"]},
        }
    ]
    assert out["name"] == ["Mrs. Jane Q Doe", "Jane Roe (maiden)"]
    assert out["telecom"] == ["phone: 555-0100 (home)", "email: j@x.org"]
    assert out["address"] == ["1 Main St, Apt 2, Boston, MA 02101"]
    assert out["maritalStatus"] == {"text": "Married"}
    assert out["communication"] == [{"language": {"codes": ["en"]}}]  # no system: the bare code
    assert out["generalPractitioner"] == [{"identifier": "http://hl7.org/fhir/sid/us-npi|9999"}]


def test_quantity_keeps_non_ucum_code_and_comparator() -> None:
    obs = {
        "resourceType": "Observation",
        "id": "q",
        "status": "final",
        "code": {"text": "x"},
        "valueQuantity": {
            "value": 5,
            "comparator": "<",
            "unit": "mmol/L",
            "system": "http://snomed.info/sct",
            "code": "258718000",
        },
    }
    assert compact(obs)["valueQuantity"] == {
        "comparator": "<",
        "value": 5,
        "unit": "mmol/L",
        "code": "http://snomed.info/sct|258718000",
    }


def test_attachment_data_removed_and_size_computed() -> None:
    doc = {
        "resourceType": "DocumentReference",
        "id": "d",
        "status": "current",
        "content": [{"attachment": {"contentType": "text/plain", "data": "aGVsbG8gd29ybGQ=", "title": "Note"}}],
    }
    out = compact(doc)
    assert out["content"] == [{"attachment": {"contentType": "text/plain", "title": "Note", "size": 11}}]
    assert "aGVsbG8" not in orjson.dumps(out).decode()


def test_elements_selects_and_extensions_on_request() -> None:
    out = compact(A1C, elements=["value[x]", "extension"])
    assert set(out) == {"resourceType", "id", "valueQuantity", "extension", "_status"}
    assert out["extension"] == [{"url": "http://example.org/x", "value": "ext"}]
    assert set(compact(A1C, elements=["value"])) == {"resourceType", "id", "valueQuantity"}
    assert set(compact(A1C, elements=["val"])) == {"resourceType", "id"}
    assert compact(A1C, elements=["text"])["text"].startswith("<div")
    assert "meta" in compact(A1C, elements=["meta"])


def test_modifier_extension_is_never_dropped() -> None:
    res = {
        "resourceType": "MedicationRequest",
        "id": "m",
        "modifierExtension": [{"url": "http://example.org/not-given", "valueBoolean": True}],
    }
    assert compact(res)["modifierExtension"] == [{"url": "http://example.org/not-given", "value": True}]


def test_contained_compacted_when_asked() -> None:
    res = {
        "resourceType": "ExplanationOfBenefit",
        "id": "e",
        "contained": [{"resourceType": "Coverage", "id": "cov", "meta": {"x": 1}, "status": "active"}],
    }
    assert "contained" not in compact(res)
    assert compact(res, elements=["contained"])["contained"] == [
        {"resourceType": "Coverage", "id": "cov", "status": "active"}
    ]


@pytest.mark.parametrize("elements", ["code", ["co de"], ["a" * 80], [1], ["x"] * 65, ["code[y]"], ["_status"]])
def test_bad_elements_rejected(elements: Any) -> None:
    with pytest.raises(InvalidInput) as err:
        compact(A1C, elements=elements)
    assert err.value.param == "elements"


@pytest.mark.parametrize("bad", [None, [], {"id": "x"}, {"resourceType": 3}])
def test_not_a_resource_rejected(bad: Any) -> None:
    with pytest.raises(InvalidInput):
        compact(bad)


def test_pathological_nesting_rejected() -> None:
    node: dict[str, Any] = {"leaf": 1}
    for _ in range(200):
        node = {"child": node}
    with pytest.raises(InvalidInput):
        compact({"resourceType": "Basic", "id": "b", "deep": node})


def test_summary_lines() -> None:
    assert summary_line(A1C) == "Observation/abc 2024-05-01 Hemoglobin A1c 7.2 % (final)"
    bp = {
        "resourceType": "Observation",
        "id": "bp",
        "status": "final",
        "code": {"text": "Blood pressure"},
        "effectiveDateTime": "2024-01-02",
        "component": [
            {"code": {"text": "Systolic"}, "valueQuantity": {"value": 120, "unit": "mm[Hg]"}},
            {"code": {"text": "Diastolic"}, "valueQuantity": {"value": 80, "unit": "mm[Hg]"}},
        ],
    }
    assert (
        summary_line(bp) == "Observation/bp 2024-01-02 Blood pressure Systolic 120 mm[Hg]; Diastolic 80 mm[Hg] (final)"
    )
    cond = {
        "resourceType": "Condition",
        "id": "c",
        "clinicalStatus": {"coding": [{"system": "http://x", "code": "active"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006", "display": "Diabetes"}]},
        "onsetDateTime": "2019-03",
    }
    assert summary_line(cond) == "Condition/c 2019-03 Diabetes (active)"
    patient = {"resourceType": "Patient", "id": "p", "name": [{"given": ["A\nB"], "family": "C"}], "gender": "female"}
    assert summary_line(patient) == "Patient/p A B C female"
    assert "\n" not in summary_line({"resourceType": "Basic", "id": "x", "code": {"text": "a\nb" * 400}})
    assert len(summary_line({"resourceType": "Basic", "id": "x", "code": {"text": "y" * 4000}})) <= 300


def _tags(res: dict[str, Any]) -> list[str]:
    return [f"{t['system']}|{t['code']}" for t in res.get("meta", {}).get("tag", [])]


def test_summary_modes() -> None:
    subsetted = f"{SUBSETTED_SYSTEM}|SUBSETTED"
    full = summary_mode(A1C, "false")
    assert full == A1C
    true = summary_mode(A1C, "true")
    assert {"status", "code", "subject", "valueQuantity", "effectiveDateTime", "_status"} <= set(true)
    assert not {"text", "extension", "referenceRange"} & set(true)
    assert _tags(true) == [subsetted]
    assert true["meta"]["versionId"] == "3"
    text = summary_mode(A1C, "text")
    assert set(text) == {"resourceType", "id", "meta", "text", "status", "_status", "code"}
    data = summary_mode(A1C, "data")
    assert "text" not in data
    assert "referenceRange" in data
    assert _tags(data) == [subsetted]
    # the tag is added once, even when already present
    assert _tags(summary_mode(true, "true")) == [subsetted]
    # data on a resource without narrative removes nothing, so it is not tagged
    assert "meta" not in summary_mode({"resourceType": "Basic", "id": "b"}, "data")
    with pytest.raises(InvalidInput) as err:
        summary_mode(A1C, "count")
    assert err.value.param == "summary"


def test_summary_true_unknown_type_keeps_minimum() -> None:
    out = summary_mode({"resourceType": "NotAType", "id": "n", "secret": "x"}, "true")
    assert set(out) == {"resourceType", "id", "meta"}


def test_apply_elements_keeps_mandatory_and_tags() -> None:
    out = apply_elements(A1C, ["subject"])
    assert set(out) == {"resourceType", "id", "meta", "status", "_status", "code", "subject"}
    assert _tags(out) == [f"{SUBSETTED_SYSTEM}|SUBSETTED"]
    assert list(out)[:2] == ["resourceType", "id"]
    with pytest.raises(InvalidInput):
        apply_elements(A1C, ["bad name"])


# ---- Synthea --------------------------------------------------------------------------------------------

_DROPPED = frozenset({"meta", "text", "contained", "extension", "modifierExtension"})


def _raw_tokens(node: Any, out: set[str], key: str = "") -> None:
    if isinstance(node, list):
        for item in node:
            _raw_tokens(item, out, key)
    elif isinstance(node, dict):
        system, code = node.get("system"), node.get("code")
        if isinstance(system, str) and isinstance(code, str) and key not in ("identifier",):
            is_ucum_unit = system == "http://unitsofmeasure.org" and code == node.get("unit")
            if not is_ucum_unit:
                out.add(f"{system}|{code}")
        for sub, value in node.items():
            if sub not in _DROPPED:
                _raw_tokens(value, out, sub)


def _compact_tokens(node: Any, out: set[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _compact_tokens(item, out)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "codes":
                out.update(value)
            elif key == "code" and isinstance(value, str):
                out.add(value)
            else:
                _compact_tokens(value, out)


@pytest.mark.shared
def test_synthea_compact_is_smaller_and_keeps_every_code(synthea_dir: Path) -> None:
    ratios: dict[str, list[float]] = {}
    for path in sorted(synthea_dir.glob("*.json"))[:4]:
        for entry in orjson.loads(path.read_bytes())["entry"]:
            raw = entry["resource"]
            out = compact(raw)
            ratios.setdefault(raw["resourceType"], []).append(len(orjson.dumps(out)) / len(orjson.dumps(raw)))
            want: set[str] = set()
            got: set[str] = set()
            _raw_tokens({k: v for k, v in raw.items() if k not in _DROPPED}, want)
            _compact_tokens(out, got)
            missing = want - got
            assert not missing, (raw["resourceType"], raw["id"], sorted(missing)[:3])
            assert summary_line(raw).startswith(f"{raw['resourceType']}/{raw['id']}")
    everything = [r for values in ratios.values() for r in values]
    assert statistics.median(everything) < 0.8
    for rtype in ("Patient", "DocumentReference", "DiagnosticReport"):
        assert statistics.median(ratios[rtype]) < 0.5, rtype
