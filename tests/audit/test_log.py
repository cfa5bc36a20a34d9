"""The audit log: append-only storage, reading back, failure modes, encryption, concurrent writers."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import apsw
import pytest
from audit_helpers import CHAIN_KEY, fill, make_record, tamper

from fhirgate.audit.log import AuditLog
from fhirgate.audit.verify import verify
from fhirgate.database import open_sqlite
from fhirgate.errors import AuditError, StoreError


def test_append_returns_consecutive_seqs_and_links(log: AuditLog) -> None:
    assert fill(log, 3) == [1, 2, 3]
    entries = list(log.iter())
    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[0].prev_hash == log.genesis
    assert entries[1].prev_hash == entries[0].hash
    assert entries[2].prev_hash == entries[1].hash
    assert len({e.hash for e in entries}) == 3


def test_records_round_trip(log: AuditLog) -> None:
    rec = make_record(7, patients=["a", "b"], references=["Observation/1", "Patient/a"], client_address="10.0.0.1")
    log.append(rec)
    assert log.tail(1)[0].record == rec


def test_tail_iter_count(log: AuditLog) -> None:
    fill(log, 2500)
    assert log.count() == 2500
    assert [e.seq for e in log.tail(3)] == [2498, 2499, 2500]
    assert log.tail(0) == []
    assert [e.seq for e in log.iter(since_seq=2497)] == [2498, 2499, 2500]
    assert sum(1 for _ in log.iter()) == 2500  # crosses read batches
    with pytest.raises(AuditError):
        log.tail(-1)


def test_triggers_refuse_update_and_delete(log: AuditLog, audit_path: Path) -> None:
    fill(log, 2)
    conn = apsw.Connection(str(audit_path))
    for sql in (
        "UPDATE audit_log SET record = '{}' WHERE seq = 1",
        "DELETE FROM audit_log WHERE seq = 2",
        "UPDATE audit_meta SET value = 'x'",
        "DELETE FROM audit_meta",
    ):
        with pytest.raises(apsw.ConstraintError, match="append-only"):
            conn.execute(sql)
    conn.close()
    assert log.count() == 2
    assert verify(log).ok


def test_reopen_continues_the_chain(audit_path: Path) -> None:
    with AuditLog(audit_path, chain_key=CHAIN_KEY) as first:
        fill(first, 3)
    with AuditLog(audit_path, chain_key=CHAIN_KEY) as second:
        assert second.append(make_record(9)) == 4
        assert verify(second).ok


def test_append_after_close_raises(log: AuditLog) -> None:
    log.close()
    with pytest.raises(AuditError, match="closed"):
        log.append(make_record())
    with pytest.raises(AuditError):
        log.count()


def test_database_failure_raises_audit_error_and_leaves_chain_intact(log: AuditLog, audit_path: Path) -> None:
    fill(log, 3)
    conn = apsw.Connection(str(audit_path))
    conn.execute("CREATE TRIGGER boom BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
    with pytest.raises(AuditError, match="append failed"):
        log.append(make_record(4))
    conn.execute("DROP TRIGGER boom")
    conn.close()
    assert log.read_anchor() is not None
    assert log.read_anchor().seq == 3
    assert log.append(make_record(5)) == 4
    assert verify(log).ok


def test_locked_database_raises_audit_error(log: AuditLog, audit_path: Path) -> None:
    fill(log, 1)
    other = apsw.Connection(str(audit_path))
    other.execute("BEGIN IMMEDIATE")
    log._conn.setbusytimeout(50)
    try:
        with pytest.raises(AuditError, match="BusyError"):
            log.append(make_record(2))
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert log.append(make_record(3)) == 2


def test_unwritable_anchor_raises_audit_error(audit_path: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "anchor-dir"
    blocker.mkdir()
    with AuditLog(audit_path, chain_key=CHAIN_KEY, head_path=blocker) as log, pytest.raises(AuditError):
        log.append(make_record())


def test_read_only_database_raises_audit_error(audit_path: Path) -> None:
    with AuditLog(audit_path, chain_key=CHAIN_KEY) as log:
        fill(log, 1)
    ro = open_sqlite(audit_path, readonly=True)
    # A log whose connection is read-only (as after a filesystem remount): appends must fail loudly.
    with AuditLog(audit_path, chain_key=CHAIN_KEY) as log:
        log._conn.close()
        log._conn = ro
        with pytest.raises(AuditError, match="ReadOnly"):
            log.append(make_record(2))


def test_missing_anchor_fails_closed_until_reanchored(log: AuditLog) -> None:
    fill(log, 3)
    log.head_path.unlink()
    with pytest.raises(AuditError, match="anchor"):
        log.append(make_record(4))
    assert log.reanchor() == 3
    assert log.append(make_record(5)) == 4
    assert verify(log).ok


def test_forged_anchor_fails_closed(log: AuditLog) -> None:
    fill(log, 2)
    log.head_path.write_bytes(log.head_path.read_bytes().replace(b"2 ", b"9 ", 1))
    with pytest.raises(AuditError, match="MAC"):
        log.append(make_record(3))


def test_forged_head_row_fails_closed(log: AuditLog, audit_path: Path) -> None:
    fill(log, 2)
    tamper(
        audit_path,
        "INSERT INTO audit_log(seq, prev_hash, hash, record) VALUES (3, ?, ?, ?)",
        params=(log.tail(1)[0].hash, "ef" * 32, make_record(3).to_json().decode()),
    )
    with pytest.raises(AuditError, match="altered"):
        log.append(make_record(4))


def test_wrong_chain_key_is_refused(log: AuditLog, audit_path: Path) -> None:
    fill(log, 1)
    with pytest.raises(AuditError, match="chain key"):
        AuditLog(audit_path, chain_key=b"x" * 32)
    with pytest.raises(AuditError):
        AuditLog(audit_path, chain_key=b"short")


def test_encrypted_log_is_unreadable_without_key(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    with AuditLog(path, key="s3cret-key", chain_key=CHAIN_KEY) as log:
        log.append(make_record(1, request_id="visible-marker-request"))
        assert verify(log).ok
    raw = path.read_bytes() + (
        path.with_name("audit.db-wal").read_bytes() if path.with_name("audit.db-wal").exists() else b""
    )
    assert b"visible-marker-request" not in raw
    assert b"SQLite format 3" not in raw[:16]
    with pytest.raises(AuditError, match="encrypted"):
        AuditLog(path, chain_key=CHAIN_KEY)
    with pytest.raises(AuditError):
        AuditLog(path, key="wrong-key", chain_key=CHAIN_KEY)
    with pytest.raises(StoreError):
        open_sqlite(path)
    with AuditLog(path, key="s3cret-key", chain_key=CHAIN_KEY) as log:
        assert log.tail(1)[0].record.request_id == "visible-marker-request"


def test_plain_log_contains_no_raw_arguments(log: AuditLog, audit_path: Path) -> None:
    log.append(
        make_record(
            1,
            arguments={"name": "Zebulon Quixote", "birthdate": "1931-02-03"},
            query_params={"name": "Zebulon Quixote", "birthdate": "1931-02-03"},
        )
    )
    log.close()
    raw = b"".join(p.read_bytes() for p in audit_path.parent.iterdir() if p.is_file())
    assert b"Zebulon" not in raw
    assert b"1931-02-03" not in raw


def _append_many(path: str, start: int, n: int, barrier: Any) -> None:
    with AuditLog(Path(path), chain_key=CHAIN_KEY) as log:
        barrier.wait(30)
        for i in range(start, start + n):
            log.append(make_record(i))


def test_two_processes_append_to_one_valid_chain(audit_path: Path) -> None:
    with AuditLog(audit_path, chain_key=CHAIN_KEY) as log:
        fill(log, 1)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_append_many, args=(str(audit_path), k * 1000, 500, barrier)) for k in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with AuditLog(audit_path, chain_key=CHAIN_KEY) as log:
        assert log.count() == 1001
        report = verify(log)
        assert report.ok, report.problems
        ids = [e.record.request_id for e in log.iter()]
        assert len(set(ids)) == 1001
        assert sum(i.startswith("req-1") for i in ids) == 500
        assert sum(i.startswith("req-2") for i in ids) == 500


def test_threads_sharing_one_log_keep_one_chain(log: AuditLog) -> None:
    import threading

    def work(k: int) -> None:
        for i in range(100):
            log.append(make_record(k * 1000 + i))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert log.count() == 400
    assert verify(log).ok
