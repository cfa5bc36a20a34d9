"""Run SQL on FHIR v2 test files (the official format) and write the official test-report JSON.

A test file holds `resources` and `tests`; each test has a `view` and `expect` rows (compared as a multiset: the
spec does not order rows), optionally `expectColumns` (compared in order), or `expectError: true` (the view must
be rejected or fail while running).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fhirgate.analytics.sof.runner import run_view
from fhirgate.analytics.sof.viewdef import load_view
from fhirgate.errors import FhirgateError, InvalidInput


@dataclass(frozen=True, slots=True)
class CaseResult:
    """The outcome of one test case."""

    file: str
    name: str
    passed: bool
    error: str | None = None


def run_case(
    case: Mapping[str, Any], resources: list[dict[str, Any]], *, force_fallback: bool = False
) -> tuple[bool, str | None]:
    """(passed, why not) for one test case."""
    expect_error = bool(case.get("expectError"))
    try:
        view = load_view(case.get("view") or {})
        rows = list(run_view(view, resources, force_fallback=force_fallback))
    except FhirgateError as exc:
        return (True, None) if expect_error else (False, exc.message)
    if expect_error:
        return False, "expected an error, got rows"
    if "expectColumns" in case and view.column_names != case["expectColumns"]:
        return False, f"expected columns {case['expectColumns']}, got {view.column_names}"
    if "expect" in case:
        problem = compare_rows(case["expect"], rows)
        if problem:
            return False, problem
    return True, None


def compare_rows(expected: list[dict[str, Any]], actual: list[dict[str, Any]]) -> str | None:
    """None when `actual` holds exactly the `expected` rows in any order, else what differs."""
    if len(expected) != len(actual):
        return f"expected {len(expected)} rows, got {len(actual)}"
    remaining = list(actual)
    for i, want in enumerate(expected):
        for j, got in enumerate(remaining):
            if _same(want, got):
                del remaining[j]
                break
        else:
            return f"expected row {i} not found: {json.dumps(want, default=str)}"
    return None


def _same(a: Any, b: Any) -> bool:
    """JSON equality, keeping booleans apart from numbers (Python has True == 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def run_file(path: Path, *, force_fallback: bool = False) -> list[CaseResult]:
    """Every case of one test file, in file order."""
    try:
        suite = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        raise InvalidInput("DIR", f"{path.name} is not a readable JSON test file") from None
    if not isinstance(suite, dict) or not isinstance(suite.get("tests"), list):
        raise InvalidInput("DIR", f"{path.name} has no tests array")
    resources = [r for r in suite.get("resources") or [] if isinstance(r, dict)]
    out: list[CaseResult] = []
    for i, case in enumerate(suite["tests"]):
        name = str(case.get("title") or f"test {i}") if isinstance(case, dict) else f"test {i}"
        if not isinstance(case, dict):
            out.append(CaseResult(path.name, name, False, "test case is not an object"))
            continue
        passed, error = run_case(case, resources, force_fallback=force_fallback)
        out.append(CaseResult(path.name, name, passed, error))
    return out


def run_directory(directory: Path, *, force_fallback: bool = False) -> list[CaseResult]:
    """Every case of every `*.json` test file in a directory, files in name order."""
    if not directory.is_dir():
        raise InvalidInput("DIR", f"{directory} is not a directory")
    files = sorted(p for p in directory.glob("*.json") if p.is_file())
    if not files:
        raise InvalidInput("DIR", "no .json test files found")
    results: list[CaseResult] = []
    for path in files:
        results.extend(run_file(path, force_fallback=force_fallback))
    return results


def report(results: list[CaseResult]) -> dict[str, Any]:
    """The official test-report object: file name → {"tests": [{"name", "result": {"passed", "error"?}}]}."""
    out: dict[str, Any] = {}
    for res in results:
        result: dict[str, Any] = {"passed": res.passed}
        if res.error:
            result["error"] = res.error
        out.setdefault(res.file, {"tests": []})["tests"].append({"name": res.name, "result": result})
    return out
