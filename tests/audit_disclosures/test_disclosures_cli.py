"""`fhirgate audit disclosures`: formats, exit codes, default window, and nothing but ids in the output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from disclosure_helpers import PHI_ARGS

from fhirgate.cli.main import main
from fhirgate.config import DataDir


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_output_is_a_list_of_objects(data_dir: DataDir, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "audit", "disclosures", "--data", str(data_dir.path), "--patient", "pat-1", "--since", "2010-01-01",
        "--format", "json",
    )  # fmt: skip
    assert code == 0 and not err
    items = json.loads(out)
    assert isinstance(items, list) and all(isinstance(i, dict) for i in items)
    assert [i["request_id"] for i in items] == ["r01", "r02", "r04", "r06", "r07", "r08", "r09", "r10"]
    assert {i["request_id"]: i["exempt_reason"] for i in items}["r10"] == "payment"


def test_default_window_is_the_last_six_years(data_dir: DataDir, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "audit", "disclosures", "--data", str(data_dir.path), "--patient", "pat-1", "--format", "json"
    )
    assert code == 0
    got = [i["request_id"] for i in json.loads(out)]
    assert "r06" not in got  # 2015
    assert "r01" in got  # 2024


def test_table_output(data_dir: DataDir, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "audit", "disclosures", "--data", str(data_dir.path), "--patient", "pat-1", "--since", "2024-04-01",
        "--until", "2024-06-30",
    )  # fmt: skip
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0] == "Accounting of disclosures for Patient/pat-1, 2024-04-01 to 2024-06-30 (UTC)"
    assert lines[1].split()[:6] == ["date", "client", "user", "purpose", "exempt", "description"]
    assert len(lines) == 5
    assert "2024-04-10 00:00:00" in lines[2] and "research-app" in lines[2] and "HRESCH" in lines[2]
    assert "request r02" in lines[2]
    assert "to the individual" in lines[3] and "not stated" in lines[3]
    assert lines[4] == "2 access(es); 1 not exempt under 164.528(a)(1)"


def test_fhir_output_is_ndjson_audit_events_for_this_patient(
    data_dir: DataDir, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, "audit", "disclosures", "--data", str(data_dir.path), "--patient", "pat-1", "--since", "2024-01-01",
        "--format", "fhir",
    )  # fmt: skip
    assert code == 0
    events = [json.loads(line) for line in out.splitlines()]
    assert len(events) == 7 and all(e["resourceType"] == "AuditEvent" for e in events)
    for e in events:
        refs = [x["what"].get("reference") for x in e["entity"] if "reference" in x.get("what", {})]
        assert refs == ["Patient/pat-1"]


@pytest.mark.parametrize("fmt", ["json", "table", "fhir"])
def test_nothing_but_ids_in_any_format(data_dir: DataDir, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    code, out, _ = run(
        capsys, "audit", "disclosures", "--data", str(data_dir.path), "--patient", "pat-1", "--since", "2010-01-01",
        "--format", fmt,
    )  # fmt: skip
    assert code == 0 and out
    for value in (*PHI_ARGS.values(), "pat-2", "pat-3", "pat-10", "cond-p", "obs-"):
        assert value not in out, value


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--patient", "pat 1"], "--patient"),
        (["--patient", "Patient/pat-1"], "--patient"),
        (["--patient", "pat-1", "--since", "2024-13-01"], "--since"),
        (["--patient", "pat-1", "--until", "01/02/2024"], "--until"),
        (["--patient", "pat-1", "--since", "2024-06-02", "--until", "2024-06-01"], "--since"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(
    data_dir: DataDir, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    code, out, err = run(capsys, "audit", "disclosures", "--data", str(data_dir.path), *args)
    assert code == 2
    assert out == ""
    assert err.startswith(f"fhirgate: error: {needle}:") and "Traceback" not in err


def test_missing_audit_log_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "audit", "disclosures", "--data", f"{tmp_path}/none", "--patient", "pat-1")
    assert code == 1 and "no audit log" in err
