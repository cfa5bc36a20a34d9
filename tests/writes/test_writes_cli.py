"""`fhirgate approvals ...` end to end in process: output and exit codes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest
from writes_helpers import appointment, make_proposal

from fhirgate.cli.main import main
from fhirgate.config import DataDir
from fhirgate.core.writes.proposal import format_instant
from fhirgate.store.factory import open_store
from fhirgate.writes.approvals import open_proposals


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A data directory with one low-risk (prop-low) and one high-risk (prop-high) pending proposal."""
    path = tmp_path / "data"
    open_store(DataDir(path)).close()  # an empty FHIR store: approving applies the write there
    with open_proposals(DataDir(path)) as store:
        now = store.now()
        store.create(make_proposal(pid="prop-low", idem="a", now=now))
        store.create(
            make_proposal(pid="prop-high", idem="b", now=now, proposed=appointment("entered-in-error", version=None))
        )
    return path


def test_list_and_filters(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "approvals", "list", "--data", str(data))
    assert code == 0 and "2 proposal(s)" in err
    assert "prop-low" in out and "prop-high" in out and "Appointment/appt-1" in out
    code, out, _ = run(capsys, "approvals", "list", "--data", str(data), "--status", "approved", "--json")
    assert code == 0 and out == ""
    code, out, _ = run(capsys, "approvals", "list", "--data", str(data), "--json")
    rows = [orjson.loads(line) for line in out.splitlines()]
    assert {r["id"]: r["risk"] for r in rows} == {"prop-low": "low", "prop-high": "high"}


def test_show_prints_diff_and_risk_reasons(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "approvals", "show", "prop-high", "--data", str(data))
    assert code == 0
    assert "risk:     HIGH" in out and "risk.status.entered_in_error" in out
    assert '~ status: "booked" → "entered-in-error"' in out
    assert "base version 3" in out
    code, out, _ = run(capsys, "approvals", "show", "prop-low", "--data", str(data), "--json")
    assert code == 0 and orjson.loads(out)["status"] == "pending"
    code, _, err = run(capsys, "approvals", "show", "prop-nope", "--data", str(data))
    assert code == 1 and "no proposal prop-nope" in err


def test_approve_and_reject_with_exit_codes(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "approvals", "approve", "prop-high", "--as", "alice", "--data", str(data))
    assert code == 3 and "approval.self_approval" in err
    code, _, err = run(
        capsys, "approvals", "approve", "prop-high", "--as", "bob", "--reason", "ok", "--data", str(data)
    )
    # Approved, then applied against the stored version: appt-1 is not in the (empty) store, so the write
    # is refused (exit 5) and nothing is written.
    assert code == 5 and "prop-high approved by bob but NOT applied" in err and "no longer exists" in err
    code, _, err = run(
        capsys, "approvals", "reject", "prop-high", "--as", "carol", "--reason", "no", "--data", str(data)
    )
    assert code == 3 and "approval.decided" in err
    code, out, _ = run(
        capsys, "approvals", "reject", "prop-low", "--as", "bob", "--reason", "wrong", "--data", str(data)
    )
    assert code == 0 and "rejected" in out
    code, out, _ = run(capsys, "approvals", "show", "prop-low", "--data", str(data))
    assert "rejected by bob" in out and "reason:   wrong" in out


def test_reject_needs_a_reason_and_approve_needs_as(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["approvals", "reject", "prop-low", "--as", "bob", "--data", str(data)])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["approvals", "approve", "prop-low", "--data", str(data)])
    assert info.value.code == 2
    capsys.readouterr()


def test_verify_detects_tampering(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "approvals", "verify", "--data", str(data))
    assert code == 0 and "2 rows verified" in out
    conn = sqlite3.connect(data / "proposals.db")
    with conn:
        conn.execute("UPDATE proposals SET status='approved' WHERE id='prop-high'")
    conn.close()
    code, _, err = run(capsys, "approvals", "verify", "--data", str(data))
    assert code == 4 and "prop-high" in err
    code, _, err = run(capsys, "approvals", "approve", "prop-high", "--as", "bob", "--data", str(data))
    assert code == 1 and "prop-high" in err and "Traceback" not in err


def test_missing_data_dir_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "approvals", "list", "--data", str(tmp_path / "absent"))
    assert code == 1 and "no store in" in err
    assert not (tmp_path / "absent").exists()


def test_expired_proposal_cannot_be_approved(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "data"
    open_store(DataDir(path)).close()
    with open_proposals(DataDir(path)) as store:
        old = store.now().replace(year=2020)
        store.create(make_proposal(pid="prop-old", now=old))
    code, _, err = run(capsys, "approvals", "approve", "prop-old", "--as", "bob", "--data", str(path))
    assert code == 3 and "approval.expired" in err
    code, out, _ = run(capsys, "approvals", "list", "--status", "expired", "--data", str(path))
    assert "prop-old" in out and format_instant(old)[:4] == "2020"
