"""PgAuditLog: appends chain like the SQLite log, triggers refuse changes, failures are AuditErrors without secrets."""

from __future__ import annotations

import psycopg
import pytest
from audit_pg_support import CHAIN_KEY, POSTGRES_URL, make_record, pg_tamper
from psycopg import sql

from fhirgate.audit.chain import AuditStore, ChainKey, HeadAnchor
from fhirgate.audit.pg_log import PgAuditLog, open_pg_audit
from fhirgate.audit.pg_schema import TRIGGERS
from fhirgate.audit.verify import verify
from fhirgate.errors import AuditError


def execute(schema: str, statement: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        conn.execute(statement.encode())


def test_appends_chain_from_genesis(pg_log: PgAuditLog) -> None:
    assert isinstance(pg_log, AuditStore)
    records = [make_record(i) for i in range(3)]
    assert [pg_log.append(r) for r in records] == [1, 2, 3]
    entries = list(pg_log.iter())
    assert entries[0].prev_hash == pg_log.genesis
    assert [e.prev_hash for e in entries[1:]] == [e.hash for e in entries[:-1]]
    chain = ChainKey(CHAIN_KEY, pg_log.chain_id)
    for e in entries:
        assert chain.chain_hash(e.prev_hash, e.seq, e.record.to_json()) == e.hash
    assert [e.record for e in entries] == records
    assert [e.seq for e in pg_log.tail(2)] == [2, 3]
    assert [e.seq for e in pg_log.iter(since_seq=2)] == [3]
    assert pg_log.count() == 3
    anchor = pg_log.read_anchor()
    assert anchor is not None
    assert anchor.seq == 3
    assert pg_log.head_line().startswith("00000000000000000003 " + entries[-1].hash + " ")
    assert pg_log.missing_triggers() == []
    assert verify(pg_log).ok


def test_reopen_keeps_chain_and_refuses_wrong_key(pg_log: PgAuditLog, schema: str) -> None:
    pg_log.append(make_record(1))
    with open_pg_audit(POSTGRES_URL, schema, CHAIN_KEY) as again:
        assert again.chain_id == pg_log.chain_id
        assert again.append(make_record(2)) == 2
    with pytest.raises(AuditError, match="chain key does not match"):
        PgAuditLog(POSTGRES_URL, schema=schema, chain_key=b"another-key-0123456789abcdef!!")
    assert verify(pg_log).ok


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET record = 'x' WHERE seq = 1",
        "DELETE FROM audit_log WHERE seq = 2",
        "TRUNCATE audit_log",
        "UPDATE audit_meta SET value = 'x' WHERE name = 'chain_id'",
        "DELETE FROM audit_meta",
        "TRUNCATE audit_meta",
        "DELETE FROM audit_head",
        "TRUNCATE audit_head",
        "UPDATE audit_head SET seq = 1",
    ],
)
def test_triggers_refuse_changes(pg_log: PgAuditLog, schema: str, statement: str) -> None:
    for i in range(3):
        pg_log.append(make_record(i))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"append-only|may not move back"):
        execute(schema, statement)
    assert verify(pg_log).ok


def test_replica_mode_does_not_silence_triggers(pg_log: PgAuditLog, schema: str) -> None:
    pg_log.append(make_record(1))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        execute(schema, "SET session_replication_role = replica; DELETE FROM audit_log")


def test_dropped_disabled_or_replaced_triggers_are_reported(pg_log: PgAuditLog, schema: str) -> None:
    execute(schema, "DROP TRIGGER audit_log_no_delete ON audit_log")
    execute(schema, "ALTER TABLE audit_meta DISABLE TRIGGER audit_meta_no_update")
    execute(schema, "ALTER TABLE audit_head ENABLE TRIGGER audit_head_no_truncate")  # not ALWAYS any more
    assert set(pg_log.missing_triggers()) == {"audit_log_no_delete", "audit_meta_no_update", "audit_head_no_truncate"}
    execute(
        schema,
        "CREATE OR REPLACE FUNCTION audit_refuse() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN OLD; END'",
    )
    missing = pg_log.missing_triggers()
    assert "audit_log_no_update" in missing
    assert "audit_head_no_rewind" not in missing  # its own function is intact
    kinds = {(p.seq, p.kind) for p in verify(pg_log).problems}
    assert (None, "schema") in kinds


def test_missing_anchor_fails_closed_until_reanchored(pg_log: PgAuditLog, schema: str) -> None:
    for i in range(3):
        pg_log.append(make_record(i))
    pg_tamper(schema, "DELETE FROM audit_head")
    with pytest.raises(AuditError, match="anchor audit_head is missing"):
        pg_log.append(make_record(4))
    assert pg_log.reanchor() == 3
    assert pg_log.append(make_record(5)) == 4
    assert verify(pg_log).ok


def test_forged_anchor_fails_closed(pg_log: PgAuditLog, schema: str) -> None:
    for i in range(2):
        pg_log.append(make_record(i))
    execute(schema, "UPDATE audit_head SET seq = 9")
    with pytest.raises(AuditError, match="bad MAC"):
        pg_log.append(make_record(3))
    assert any(p.kind == "anchor" for p in verify(pg_log).problems)


def test_failed_append_rolls_back_record_and_anchor(pg_log: PgAuditLog, schema: str) -> None:
    for i in range(3):
        pg_log.append(make_record(i))
    execute(
        schema,
        "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RAISE EXCEPTION ''disk on fire''; END'; "
        "CREATE TRIGGER boom BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION boom()",
    )
    with pytest.raises(AuditError, match="append failed: RaiseException") as caught:
        pg_log.append(make_record(4))
    assert "disk" not in str(caught.value)
    execute(schema, "DROP TRIGGER boom ON audit_log")
    assert pg_log.read_anchor() == HeadAnchor(3, pg_log.tail(1)[0].hash)
    assert pg_log.append(make_record(5)) == 4
    assert verify(pg_log).ok


def test_errors_never_show_url_or_password(schema: str) -> None:
    url = "postgresql://fhirgate:s3cret-pw@127.0.0.1:1/test"
    with pytest.raises(AuditError) as caught:
        PgAuditLog(url, schema=schema, chain_key=CHAIN_KEY)
    assert "s3cret" not in str(caught.value)
    assert "127.0.0.1" not in str(caught.value)
    assert caught.value.__cause__ is None


def test_bad_arguments_and_closed_log(pg_log: PgAuditLog, schema: str) -> None:
    with pytest.raises(AuditError, match="at least 16 bytes"):
        PgAuditLog(POSTGRES_URL, schema=schema, chain_key=b"short")
    with pytest.raises(AuditError, match="identifier"):
        PgAuditLog(POSTGRES_URL, schema="Bad; DROP", chain_key=CHAIN_KEY)
    with pytest.raises(AuditError, match="AuditRecord"):
        pg_log.append({"not": "a record"})  # type: ignore[arg-type]
    with pytest.raises(AuditError, match="no audit chain"):
        PgAuditLog(POSTGRES_URL, schema=schema + "_none", chain_key=CHAIN_KEY, create=False)
    pg_log.close()
    pg_log.close()
    with pytest.raises(AuditError, match="closed"):
        pg_log.append(make_record())
    with pytest.raises(AuditError, match="closed"):
        pg_log.count()


def test_trigger_names_match_sqlite_ones() -> None:
    from fhirgate.audit.log import TRIGGERS as SQLITE_TRIGGERS

    assert set(SQLITE_TRIGGERS) <= set(TRIGGERS)
