"""Verification, accounting of disclosures and BALP export read PgAuditLog exactly as they read the SQLite log."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
from collections.abc import Callable, Iterator
from pathlib import Path

import apsw
import orjson
import pytest
from audit_pg_support import CHAIN_KEY, make_record, pg_tamper, scratch_schema

from fhirgate.audit.balp import export_fhir
from fhirgate.audit.chain import AuditStore
from fhirgate.audit.disclosures import disclosures
from fhirgate.audit.log import TRIGGERS as SQLITE_TRIGGERS
from fhirgate.audit.log import AuditLog
from fhirgate.audit.pg_log import PgAuditLog
from fhirgate.audit.record import AuditRecord
from fhirgate.audit.verify import verify
from pg_server import POSTGRES_URL, drop_schema, postgres_reachable

Tamper = Callable[..., None]


def _sqlite_tamper(path: Path) -> Tamper:
    def tamper(*statements: str) -> None:
        conn = apsw.Connection(str(path))
        for name in SQLITE_TRIGGERS:
            conn.execute(f"DROP TRIGGER IF EXISTS {name}")
        for statement in statements:
            conn.execute(statement)
        for statement in SQLITE_TRIGGERS.values():
            conn.execute(statement)
        conn.close()

    return tamper


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[AuditStore, Tamper]]:
    """Each audit log implementation with a tamper(statements…) acting as a writer without the chain key."""
    if request.param == "sqlite":
        with AuditLog(tmp_path / "audit.db", chain_key=CHAIN_KEY) as log:
            yield log, _sqlite_tamper(tmp_path / "audit.db")
        return
    if not postgres_reachable():
        pytest.skip("no PostgreSQL server reachable at FHIRGATE_TEST_POSTGRES_URL")
    schema = scratch_schema()
    try:
        with PgAuditLog(POSTGRES_URL, schema=schema, chain_key=CHAIN_KEY) as pg:
            yield pg, lambda *statements: pg_tamper(schema, *statements)
    finally:
        drop_schema(schema)


def found(log: AuditStore) -> set[tuple[int | None, str]]:
    return {(p.seq, p.kind) for p in verify(log).problems}


def fill(log: AuditStore, n: int) -> None:
    for i in range(n):
        log.append(make_record(i))


@pytest.mark.parametrize("n", [0, 1, 50])
def test_untouched_chain_verifies(backend: tuple[AuditStore, Tamper], n: int) -> None:
    log, _ = backend
    fill(log, n)
    report = verify(log)
    assert report.ok, report.problems
    assert (report.checked, report.head_seq, report.anchor_seq) == (n, n, n or None)


def test_edited_record_is_pinpointed(backend: tuple[AuditStore, Tamper]) -> None:
    log, tamper = backend
    fill(log, 10)
    tamper("UPDATE audit_log SET record = replace(record, 'req-4', 'req-X') WHERE seq = 5")
    assert found(log) == {(5, "edited")}


def test_edited_hash_is_pinpointed(backend: tuple[AuditStore, Tamper]) -> None:
    log, tamper = backend
    fill(log, 10)
    tamper(f"UPDATE audit_log SET hash = '{'ab' * 32}' WHERE seq = 3")
    assert found(log) == {(3, "edited")}


def test_deleted_middle_record_is_pinpointed(backend: tuple[AuditStore, Tamper]) -> None:
    log, tamper = backend
    fill(log, 10)
    tamper("DELETE FROM audit_log WHERE seq = 5")
    report = verify(log)
    assert {(p.seq, p.kind) for p in report.problems} == {(5, "deleted")}
    assert "record 5" in report.problems[0].detail


def test_deleted_last_records_are_truncation(backend: tuple[AuditStore, Tamper]) -> None:
    log, tamper = backend
    fill(log, 10)
    tamper("DELETE FROM audit_log WHERE seq > 7")
    report = verify(log)
    assert {(p.seq, p.kind) for p in report.problems} == {(8, "truncated")}
    assert "records 8..10" in report.problems[0].detail


def test_swapped_records_are_reordered(backend: tuple[AuditStore, Tamper]) -> None:
    log, tamper = backend
    fill(log, 6)
    tamper("UPDATE audit_log SET seq = -seq WHERE seq IN (2, 4)", "UPDATE audit_log SET seq = 6 + seq WHERE seq < 0")
    kinds = found(log)
    assert {(2, "reordered"), (4, "reordered")} <= kinds


def test_pg_truncation_with_anchor_rollback_needs_an_external_head_copy(schema: str, pg_log: PgAuditLog) -> None:
    """The documented limit: rolling back records AND the anchor row (kept from earlier) verifies clean,
    but an off-host copy of the head line names a record that is no longer there."""
    fill(pg_log, 5)
    shipped = pg_log.head_line()
    kept = pg_log.read_anchor()
    assert kept is not None
    fill(pg_log, 1)
    pg_tamper(
        schema,
        "DELETE FROM audit_log WHERE seq = 6",
        f"UPDATE audit_head SET seq = 5, hash = '{kept.hash}', mac = '{shipped.split()[2]}'",
    )
    assert verify(pg_log).ok
    fill(pg_log, 1)  # the chain goes on from the rolled-back head: the copy shipped before still matches
    seq, hash_, _ = shipped.split()
    assert next(e for e in pg_log.iter(int(seq) - 1)).hash == hash_


def _disclosure_records() -> list[AuditRecord]:
    base = [
        make_record(1, patients=["pat-1"], time="2024-03-01T10:00:00.000Z"),
        make_record(2, patients=["pat-1", "pat-2"], time="2024-04-10T00:00:00.000Z"),
        make_record(3, patients=["pat-1"], outcome="denied", time="2024-05-05T09:00:00.000Z"),
        make_record(4, patients=["pat-2"], time="2024-06-01T23:59:59.999Z"),
        make_record(5, patients=["pat-1"], time="2015-01-01T08:00:00.000Z"),
    ]
    purposes = [("TREAT",), ("HRESCH",), (), ("HPAYMT",), ("TREAT",)]
    return [
        dataclasses.replace(r, client_id="app-a", sub="user-7", purpose_of_use=p)
        for r, p in zip(base, purposes, strict=True)
    ]


def test_disclosures_and_export_match_sqlite(backend: tuple[AuditStore, Tamper], tmp_path: Path) -> None:
    log, _ = backend
    records = _disclosure_records()
    for rec in records:
        log.append(rec)
    with AuditLog(tmp_path / "reference.db", chain_key=CHAIN_KEY) as reference:
        for rec in records:
            reference.append(rec)
        today = dt.date(2024, 12, 31)
        expected = disclosures(reference, "pat-1", today=today)
        ref_out = io.BytesIO()
        export_fhir(reference, ref_out)
    got = disclosures(log, "pat-1", today=today)
    assert got == expected
    assert [d.request_id for d in got] == ["req-1", "req-2"]
    assert [d.exempt_reason for d in got] == ["treatment", None]
    out = io.BytesIO()
    assert export_fhir(log, out) == len(ref_out.getvalue().splitlines())
    assert [orjson.loads(line)["id"] for line in out.getvalue().splitlines()] == [
        orjson.loads(line)["id"] for line in ref_out.getvalue().splitlines()
    ]
