"""The official SQL on FHIR v2 test suite, every case in both modes: compiled fast path and fhirpathpy only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fhirgate.analytics.sof.testsuite import report, run_case, run_directory

SUITE = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "sql-on-fhir" / "tests"


def _cases() -> list[Any]:
    if not SUITE.is_dir():
        return [pytest.param(None, None, id="suite-absent")]
    out = []
    for path in sorted(SUITE.glob("*.json")):
        for i, case in enumerate(json.loads(path.read_text(encoding="utf-8"))["tests"]):
            out.append(pytest.param(path.name, i, id=f"{path.stem}-{i}-{case.get('title', '')}"))
    return out


@pytest.fixture(scope="module")
def suite_dir(shared_dir: Path) -> Path:
    path = shared_dir / "conformance" / "sql-on-fhir" / "tests"
    if not path.is_dir():
        pytest.skip(f"SQL on FHIR suite not found at {path}")
    return path


@pytest.mark.parametrize("force_fallback", [False, True], ids=["compiled", "fallback"])
@pytest.mark.parametrize(("file_name", "index"), _cases())
def test_official_case(suite_dir: Path, file_name: str, index: int, force_fallback: bool) -> None:
    suite = json.loads((suite_dir / file_name).read_text(encoding="utf-8"))
    passed, error = run_case(suite["tests"][index], suite["resources"], force_fallback=force_fallback)
    assert passed, error


def test_whole_suite_count(suite_dir: Path) -> None:
    results = run_directory(suite_dir)
    assert len(results) == 134
    assert sum(r.passed for r in results) == 134


def _check_report_shape(doc: Any) -> None:
    """Structural check against test-report.schema.json (jsonschema is optional in this project)."""
    assert isinstance(doc, dict) and doc
    for file_name, suite in doc.items():
        assert isinstance(file_name, str)
        assert isinstance(suite, dict) and set(suite) == {"tests"}
        assert isinstance(suite["tests"], list) and len(suite["tests"]) >= 1
        for test in suite["tests"]:
            assert isinstance(test, dict) and {"name", "result"} <= set(test)
            assert isinstance(test["name"], str)
            result = test["result"]
            assert isinstance(result, dict) and isinstance(result["passed"], bool)
            assert set(result) <= {"passed", "error", "details"}
            if "error" in result:
                assert isinstance(result["error"], str)


def test_report_matches_schema(suite_dir: Path, shared_dir: Path) -> None:
    doc = report(run_directory(suite_dir))
    _check_report_shape(doc)
    assert len(doc) == 22
    schema_path = shared_dir / "conformance" / "sql-on-fhir" / "test-report.schema.json"
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - the structural check above stands in
        return
    jsonschema.validate(doc, json.loads(schema_path.read_text(encoding="utf-8")))


def test_report_shape_check_can_fail() -> None:
    with pytest.raises(AssertionError):
        _check_report_shape({"basic.json": {"tests": [{"name": "x", "result": {"passed": "yes"}}]}})
    with pytest.raises(AssertionError):
        _check_report_shape({"basic.json": {"tests": []}})


def test_failing_case_is_reported() -> None:
    resources = [{"resourceType": "Patient", "id": "p1"}]
    case = {"title": "wrong", "view": {"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]}}
    passed, error = run_case({**case, "expect": [{"id": "p2"}]}, resources)
    assert not passed and error and "not found" in error
    passed, error = run_case({**case, "expectError": True}, resources)
    assert not passed
    passed, _ = run_case({**case, "expect": [{"id": "p1"}], "expectColumns": ["id"]}, resources)
    assert passed
    passed, error = run_case({**case, "expect": [{"id": "p1"}], "expectColumns": ["x"]}, resources)
    assert not passed
