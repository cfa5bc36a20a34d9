"""The `fhirgate` command end to end, in process: load, export, demo-data, token, audit verify/tail/export."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import jwt
import orjson
import pytest

from fhirgate.cli.main import main
from fhirgate.config import DataDir

TODAY = "2026-06-01"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("cli") / "data"
    assert (
        main(["demo-data", "--data", str(data), "--patients", "12", "--seed", "5", "--today", TODAY, "--no-progress"])
        == 0
    )
    return data


def test_demo_data_trusts_dev_issuer_and_token_verifies(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = DataDir(demo).settings()
    assert settings.trust_dev_issuer is True
    code, out, err = run(capsys, "token", "--data", str(demo), "--scope", "patient/*.rs", "--patient", "pat-000001")
    assert code == 0 and not err
    claims = jwt.decode(out.strip(), options={"verify_signature": False})
    assert claims["scope"] == "patient/*.rs"
    assert claims["patient"] == "pat-000001"
    assert claims["aud"] == settings.resource_url


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--scope", "patient/Observation.rx"], "--scope"),
        (["--scope", "patient/*.rs"], "--patient"),
        (["--scope", "user/*.rs", "--ttl", "forever"], "ttl"),
    ],
)
def test_token_rejects_bad_input(demo: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str) -> None:
    code, out, err = run(capsys, "token", "--data", str(demo), *args)
    assert code == 1
    assert out == ""
    assert needle in err and "Traceback" not in err


def test_export_writes_one_ndjson_file_per_type(demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "export", "--data", str(demo), "--out", str(tmp_path / "bulk"))
    assert code == 0
    files = {p.stem: p for p in (tmp_path / "bulk").glob("*.ndjson")}
    assert {"Patient", "Appointment", "Observation", "Encounter"} <= set(files)
    patients = [orjson.loads(line) for line in files["Patient"].read_bytes().splitlines()]
    assert len(patients) == 12
    assert all(p["resourceType"] == "Patient" and p["meta"]["versionId"] for p in patients)
    assert "exported" in out


def test_load_reports_rejected_bundle_and_goes_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = {"resourceType": "Patient", "id": "p1", "gender": "female"}
    bad_tx = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "p2"}, "request": {"method": "PUT", "url": "Patient/p2"}},
            {
                "resource": {"resourceType": "Observation", "id": "o1", "status": "bogus", "code": {"text": "x"}},
                "request": {"method": "PUT", "url": "Observation/o1"},
            },
        ],
    }
    (tmp_path / "a_bad.json").write_text(json.dumps(bad_tx))
    (tmp_path / "b_good.json").write_text(json.dumps(good))
    data = tmp_path / "data"
    code, out, _ = run(capsys, "load", "--data", str(data), str(tmp_path / "a_bad.json"), str(tmp_path / "b_good.json"))
    assert code == 3  # some input rejected
    assert "a_bad.json" in out
    assert "entry 1" in out
    assert "nothing stored" in out
    con = sqlite3.connect(data / "store.db")
    ids = {row[0] for row in con.execute("select id from resources")}
    assert ids == {"p1"}  # nothing of the rejected transaction was stored


def test_load_missing_path_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "load", "--data", str(tmp_path / "d"), str(tmp_path / "nope.json"))
    assert code == 1 and "PATH" in err and "not found" in err


def test_export_without_store_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "export", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o"))
    assert code == 1 and "demo-data" in err


def test_audit_verify_tail_export_and_tamper(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fhirgate.audit.log import AuditLog
    from fhirgate.audit.record import AuditRecord

    data = DataDir(tmp_path / "data").ensure()
    log = AuditLog(data.audit_path, chain_key=data.secret("audit-chain"))
    for i in range(5):
        log.append(
            AuditRecord.new(
                request_id=f"r{i}",
                transport="cli",
                method="tools/call",
                name="read_resource",
                interaction="read",
                balp_kind="read",
                outcome="success",
                references=(f"Patient/p{i}",),
                patients=(f"p{i}",),
            )
        )
    log.close()
    assert run(capsys, "audit", "verify", "--data", str(data.path))[0] == 0
    code, out, _ = run(capsys, "audit", "tail", "--data", str(data.path), "-n", "2")
    assert code == 0 and len(out.strip().splitlines()) == 2 and "p4" in out
    code, out, _ = run(capsys, "audit", "export", "--data", str(data.path), "--format", "fhir")
    events = [json.loads(line) for line in out.splitlines()]
    assert len(events) == 5 and all(e["resourceType"] == "AuditEvent" for e in events)

    con = sqlite3.connect(data.audit_path)
    triggers = [r[0] for r in con.execute("select name from sqlite_master where type='trigger'")]
    for name in triggers:
        con.execute(f"drop trigger {name}")
    con.execute("update audit_log set record = replace(record, 'p2', 'p9') where seq = 3")
    con.commit()
    con.close()
    code, _, err = run(capsys, "audit", "verify", "--data", str(data.path))
    assert code == 4
    assert "seq 3" in err and "edited" in err
