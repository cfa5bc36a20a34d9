"""`fhirgate views run` and `fhirgate views test` end to end through cli.main."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from fhirgate.cli.main import main

VIEW: dict[str, Any] = {
    "resource": "Patient",
    "select": [
        {"column": [{"name": "id", "path": "id"}, {"name": "active", "path": "active"}]},
        {"forEachOrNull": "name", "column": [{"name": "given", "path": "given", "collection": True}]},
    ],
}
RESOURCES = [
    {"resourceType": "Patient", "id": "p1", "active": True, "name": [{"given": ["A", "B"]}]},
    {"resourceType": "Patient", "id": "p2"},
    {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"}},
]


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    view = tmp_path / "view.json"
    view.write_text(json.dumps(VIEW), encoding="utf-8")
    data = tmp_path / "r.ndjson"
    data.write_text("\n".join(json.dumps(r) for r in RESOURCES) + "\n", encoding="utf-8")
    return view, data


def test_run_json_keeps_column_order(files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    view, data = files
    assert main(["views", "run", str(view), "--resources", str(data)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows == [{"id": "p1", "active": True, "given": ["A", "B"]}, {"id": "p2", "active": None, "given": []}]
    assert list(rows[0]) == ["id", "active", "given"]


def test_run_ndjson_and_csv(files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    view, data = files
    assert main(["views", "run", str(view), "--resources", str(data), "--format", "ndjson"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(x)["id"] for x in lines] == ["p1", "p2"]
    assert main(["views", "run", str(view), "--resources", str(data), "--format", "csv", "--fallback"]) == 0
    table = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert table == [["id", "active", "given"], ["p1", "true", '["A", "B"]'], ["p2", "", "[]"]]


def test_run_forbidden_view_exits_1(
    tmp_path: Path, files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, data = files
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"resource": "Patient", "select": [{"forEach": "a", "forEachOrNull": "b"}]}), "utf-8")
    assert main(["views", "run", str(bad), "--resources", str(data)]) == 1
    err = capsys.readouterr().err
    assert "select[0]" in err and "at most one" in err


def test_run_over_the_store(tmp_path: Path, files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from fhirgate.config import DataDir
    from fhirgate.store.factory import open_store

    view, _ = files
    data_dir = tmp_path / "data"
    store = open_store(DataDir(data_dir).ensure(), key=None)
    try:
        store.write([dict(r) for r in RESOURCES])
    finally:
        store.close()
    assert main(["views", "run", str(view), "--data", str(data_dir), "--format", "ndjson"]) == 0
    ids = sorted(json.loads(x)["id"] for x in capsys.readouterr().out.splitlines())
    assert ids == ["p1", "p2"]
    assert main(["views", "run", str(view), "--data", str(tmp_path / "none")]) == 1


def test_views_test_writes_report_and_fails_on_failures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = {
        "title": "t",
        "resources": RESOURCES,
        "tests": [
            {
                "title": "ok",
                "view": {"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]},
                "expect": [{"id": "p1"}, {"id": "p2"}],
            },
            {
                "title": "bad",
                "view": {"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]},
                "expect": [{"id": "p9"}, {"id": "p2"}],
            },
        ],
    }
    (tmp_path / "t.json").write_text(json.dumps(suite), encoding="utf-8")
    report = tmp_path / "report.json"
    assert main(["views", "test", str(tmp_path), "--report", str(report)]) == 1
    assert "1 passed, 1 failed" in capsys.readouterr().out
    doc = json.loads(report.read_text(encoding="utf-8"))
    assert [t["result"]["passed"] for t in doc["t.json"]["tests"]] == [True, False]


def test_views_test_official_suite(shared_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = shared_dir / "conformance" / "sql-on-fhir" / "tests"
    assert main(["views", "test", str(suite), "--report", str(tmp_path / "r.json")]) == 0
    assert "134 passed, 0 failed" in capsys.readouterr().out
