"""Verification must find every kind of tampering done straight to the database, and say which record."""

from __future__ import annotations

from pathlib import Path

import pytest
from audit_helpers import CHAIN_KEY, fill, make_record, tamper

from fhirgate.audit.log import AuditLog
from fhirgate.audit.verify import verify
from fhirgate.errors import AuditError


def found(log: AuditLog) -> set[tuple[int | None, str]]:
    return {(p.seq, p.kind) for p in verify(log).problems}


@pytest.mark.parametrize("n", [0, 1, 1000])
def test_untouched_chain_verifies(log: AuditLog, n: int) -> None:
    fill(log, n)
    report = verify(log)
    assert report.ok, report.problems
    assert report.checked == n
    assert report.head_seq == n
    assert report.anchor_seq == (n or None)


def test_edited_record_json_is_pinpointed(log: AuditLog, audit_path: Path) -> None:
    fill(log, 10)
    tamper(audit_path, "UPDATE audit_log SET record = replace(record, 'req-4', 'req-X') WHERE seq = 5")
    assert found(log) == {(5, "edited")}


@pytest.mark.parametrize("column", ["hash", "prev_hash"])
def test_edited_chain_columns_are_pinpointed(log: AuditLog, audit_path: Path, column: str) -> None:
    fill(log, 10)
    tamper(audit_path, f"UPDATE audit_log SET {column} = ? WHERE seq = 5", params=("ab" * 32,))
    assert found(log) == {(5, "edited")}


def test_edit_with_recomputed_plain_sha256_still_fails(log: AuditLog, audit_path: Path) -> None:
    """Without the chain key an attacker cannot re-forge: an unkeyed recomputation is caught."""
    fill(log, 3)
    tamper(
        audit_path,
        "UPDATE audit_log SET record = replace(record, 'success', 'denied'), "
        "hash = lower(hex(randomblob(32))) WHERE seq = 2",
    )
    assert found(log) == {(2, "edited")}


def test_deleted_middle_record_is_pinpointed(log: AuditLog, audit_path: Path) -> None:
    fill(log, 10)
    tamper(audit_path, "DELETE FROM audit_log WHERE seq = 5")
    report = verify(log)
    assert {(p.seq, p.kind) for p in report.problems} == {(5, "deleted")}
    assert "record 5" in report.problems[0].detail


def test_deleted_range_is_reported_as_one_span(log: AuditLog, audit_path: Path) -> None:
    fill(log, 10)
    tamper(audit_path, "DELETE FROM audit_log WHERE seq BETWEEN 4 AND 6")
    report = verify(log)
    assert {(p.seq, p.kind) for p in report.problems} == {(4, "deleted")}
    assert "records 4..6" in report.problems[0].detail


def test_deleted_first_record_is_pinpointed(log: AuditLog, audit_path: Path) -> None:
    fill(log, 5)
    tamper(audit_path, "DELETE FROM audit_log WHERE seq = 1")
    assert found(log) == {(1, "deleted")}


def test_deleted_last_records_are_truncation(log: AuditLog, audit_path: Path) -> None:
    fill(log, 10)
    tamper(audit_path, "DELETE FROM audit_log WHERE seq > 7")
    report = verify(log)
    assert {(p.seq, p.kind) for p in report.problems} == {(8, "truncated")}
    assert "records 8..10" in report.problems[0].detail


def test_truncation_hidden_from_sqlite_counter_is_caught_by_anchor(log: AuditLog, audit_path: Path) -> None:
    fill(log, 10)
    tamper(
        audit_path,
        "DELETE FROM audit_log WHERE seq > 7",
        "UPDATE sqlite_sequence SET seq = 7 WHERE name = 'audit_log'",
    )
    assert found(log) == {(8, "truncated")}


def test_truncation_without_anchor_is_caught_by_counter(log: AuditLog, audit_path: Path) -> None:
    fill(log, 10)
    tamper(audit_path, "DELETE FROM audit_log WHERE seq > 7")
    log.head_path.unlink()
    assert found(log) == {(None, "anchor"), (8, "truncated")}


def test_everything_deleted_is_truncation(log: AuditLog, audit_path: Path) -> None:
    fill(log, 4)
    tamper(audit_path, "DELETE FROM audit_log", "DELETE FROM sqlite_sequence")
    assert found(log) == {(1, "truncated")}


def test_swapped_record_contents_are_reordered(log: AuditLog, audit_path: Path) -> None:
    fill(log, 10)
    tamper(
        audit_path,
        "CREATE TEMP TABLE t AS SELECT seq, record FROM audit_log WHERE seq IN (5, 6)",
        "UPDATE audit_log SET record = (SELECT record FROM t WHERE t.seq = 11 - audit_log.seq) WHERE seq IN (5, 6)",
    )
    report = verify(log)
    assert {(p.seq, p.kind) for p in report.problems} == {(5, "reordered"), (6, "reordered")}
    details = {p.seq: p.detail for p in report.problems}
    assert "record 6" in details[5]
    assert "record 5" in details[6]


def test_swapped_seq_numbers_are_reordered(log: AuditLog, audit_path: Path) -> None:
    fill(log, 10)
    tamper(
        audit_path,
        "UPDATE audit_log SET seq = -5 WHERE seq = 5",
        "UPDATE audit_log SET seq = 5 WHERE seq = 6",
        "UPDATE audit_log SET seq = 6 WHERE seq = -5",
    )
    assert found(log) == {(5, "reordered"), (6, "reordered")}


def test_renumbered_after_delete_shows_deletion_and_truncation(log: AuditLog, audit_path: Path) -> None:
    """Delete record 5 and shift later rows down to close the gap: still caught."""
    fill(log, 8)
    tamper(
        audit_path,
        "DELETE FROM audit_log WHERE seq = 5",
        *[f"UPDATE audit_log SET seq = {s - 1} WHERE seq = {s}" for s in range(6, 9)],
    )
    problems = found(log)
    assert (8, "truncated") in problems
    assert {seq for seq, kind in problems if kind == "reordered"} == {5, 6, 7}
    assert all(seq is None or seq >= 5 for seq, _ in problems)


def test_forged_row_at_the_end_is_inserted(log: AuditLog, audit_path: Path) -> None:
    fill(log, 10)
    last = log.tail(1)[0]
    forged = make_record(99, outcome="denied").to_json().decode()
    tamper(
        audit_path,
        "INSERT INTO audit_log(seq, prev_hash, hash, record) VALUES (11, ?, ?, ?)",
        params=(last.hash, "cd" * 32, forged),
    )
    assert found(log) == {(11, "inserted")}


def test_replayed_copy_is_inserted(log: AuditLog, audit_path: Path) -> None:
    fill(log, 10)
    tamper(
        audit_path,
        "INSERT INTO audit_log(seq, prev_hash, hash, record) SELECT 11, prev_hash, hash, record "
        "FROM audit_log WHERE seq = 3",
    )
    report = verify(log)
    assert {(p.seq, p.kind) for p in report.problems} == {(11, "inserted")}
    assert "record 3" in report.problems[0].detail


def test_row_before_the_first_is_inserted(log: AuditLog, audit_path: Path) -> None:
    fill(log, 3)
    tamper(
        audit_path,
        "INSERT INTO audit_log(seq, prev_hash, hash, record) VALUES (0, ?, ?, ?)",
        params=("00" * 32, "11" * 32, make_record(7).to_json().decode()),
    )
    assert found(log) == {(0, "inserted")}


def test_dropped_triggers_are_reported(log: AuditLog, audit_path: Path) -> None:
    fill(log, 3)
    tamper(audit_path, restore_triggers=False)
    report = verify(log)
    assert not report.ok
    assert {p.kind for p in report.problems} == {"schema"}
    assert len(report.problems) == 4


def test_forged_anchor_is_reported(log: AuditLog) -> None:
    fill(log, 3)
    data = log.head_path.read_bytes()
    log.head_path.write_bytes(b"00000000000000000009" + data[20:])
    assert found(log) == {(None, "anchor")}


def test_rolled_back_anchor_is_reported(log: AuditLog) -> None:
    fill(log, 3)
    old = log.head_path.read_bytes()
    fill(log, 2)
    log.head_path.write_bytes(old)
    assert found(log) == {(4, "anchor")}


def test_several_tamperings_are_all_reported(log: AuditLog, audit_path: Path) -> None:
    fill(log, 20)
    tamper(
        audit_path,
        "UPDATE audit_log SET record = replace(record, 'req-2', 'req-Z') WHERE seq = 3",
        "DELETE FROM audit_log WHERE seq = 10",
        "DELETE FROM audit_log WHERE seq > 18",
    )
    assert found(log) == {(3, "edited"), (10, "deleted"), (19, "truncated")}


def test_appends_after_truncation_keep_the_evidence(log: AuditLog, audit_path: Path) -> None:
    fill(log, 10)
    tamper(
        audit_path,
        "DELETE FROM audit_log WHERE seq > 7",
        "UPDATE sqlite_sequence SET seq = 7 WHERE name = 'audit_log'",
    )
    seq = log.append(make_record(50))
    assert seq == 11
    assert found(log) == {(8, "deleted")}


def test_verify_with_wrong_key_is_refused(log: AuditLog, audit_path: Path) -> None:
    fill(log, 2)
    with pytest.raises(AuditError, match="chain key"):
        AuditLog(audit_path, chain_key=b"another-key-0123456789abcdef")
    # The right key still verifies.
    with AuditLog(audit_path, chain_key=CHAIN_KEY) as again:
        assert verify(again).ok


def test_huge_forged_counter_is_reported_quickly(log: AuditLog, audit_path: Path) -> None:
    fill(log, 3)
    tamper(
        audit_path,
        "UPDATE audit_log SET record = replace(record, 'req-1', 'req-Y') WHERE seq = 2",
        "UPDATE sqlite_sequence SET seq = 9000000000000 WHERE name = 'audit_log'",
    )
    assert found(log) == {(2, "edited"), (4, "truncated")}
