"""The PostgreSQL audit schema: chain, meta and head-anchor tables, and the triggers that keep them append-only.

HIPAA 45 CFR 164.312(b) (audit controls): the triggers make editing, deleting or truncating audit
records a deliberate act of the table owner (disable the trigger) rather than a stray statement, and
verification reports a trigger that is missing, disabled, or whose function was replaced. Triggers are
ENABLE ALWAYS, so `session_replication_role = replica` does not silence them either.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

_TABLES = (
    "CREATE TABLE IF NOT EXISTS audit_log("
    "seq BIGINT PRIMARY KEY, prev_hash TEXT NOT NULL, hash TEXT NOT NULL, record TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit_meta(name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit_head("
    "id BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id), seq BIGINT NOT NULL, hash TEXT NOT NULL, mac TEXT NOT NULL)",
)

# Trigger function bodies; verification compares the stored source with these, so a no-op swap is reported.
FUNCTIONS: dict[str, str] = {
    "audit_refuse": "BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege'; "
    "END",
    "audit_refuse_rewind": "BEGIN RAISE EXCEPTION 'audit_head may not move back' "
    "USING ERRCODE = 'insufficient_privilege'; END",
}


def _trigger(table: str, op: str, function: str = "audit_refuse", when: str = "") -> str:
    level = "STATEMENT" if op == "TRUNCATE" else "ROW"
    return f"CREATE TRIGGER {{name}} BEFORE {op} ON {table} FOR EACH {level} {when}EXECUTE FUNCTION {function}()"


# name -> (table, CREATE TRIGGER statement with {name}); every one is made ENABLE ALWAYS.
TRIGGERS: dict[str, tuple[str, str]] = {
    **{
        f"{table}_no_{op.lower()}": (table, _trigger(table, op))
        for table in ("audit_log", "audit_meta")
        for op in ("UPDATE", "DELETE", "TRUNCATE")
    },
    "audit_head_no_delete": ("audit_head", _trigger("audit_head", "DELETE")),
    "audit_head_no_truncate": ("audit_head", _trigger("audit_head", "TRUNCATE")),
    "audit_head_no_rewind": (
        "audit_head",
        _trigger("audit_head", "UPDATE", "audit_refuse_rewind", "WHEN (NEW.seq < OLD.seq) "),
    ),
}


def _lock_key(label: str, schema: str) -> int:
    digest = hashlib.sha256(f"fhirgate-audit|{label}|{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def head_lock_key(schema: str) -> int:
    """The advisory-lock key that serializes appends to the chain in `schema` across all processes."""
    return _lock_key("head", schema)


def create_audit_schema(conn: psycopg.Connection[Any], schema: str, key_check: Callable[[str], str]) -> None:
    """Create the schema, tables and (on a fresh chain) triggers and chain id; existing ones are left as found.

    `key_check(chain_id)` gives the value stored so a wrong chain key is refused at open. Serialized by an
    advisory lock, so worker processes starting together do not race on DDL or create two chain ids.
    """
    ident = sql.Identifier(schema)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key("ddl", schema),))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(ident))
        fresh = conn.execute("SELECT to_regclass('audit_log') IS NULL").fetchone() == (True,)
        for statement in _TABLES:
            conn.execute(sql.SQL(statement))  # fixed text, no values
        if fresh:
            for fname, body in FUNCTIONS.items():
                conn.execute(
                    sql.SQL("CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS {}").format(
                        sql.Identifier(fname), sql.Literal(body)
                    )
                )
            for name, (table, statement) in TRIGGERS.items():
                conn.execute(sql.SQL(statement.format(name=name)))
                conn.execute(
                    sql.SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(
                        sql.Identifier(table), sql.Identifier(name)
                    )
                )
        row = conn.execute("SELECT value FROM audit_meta WHERE name = 'chain_id'").fetchone()
        if row is None:
            chain_id = secrets.token_hex(16)
            conn.execute(
                "INSERT INTO audit_meta(name, value) VALUES ('chain_id', %s), ('key_check', %s)",
                (chain_id, key_check(chain_id)),
            )


def missing_triggers(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    """Append-only triggers of `schema` that are absent, not ENABLE ALWAYS, or whose function was replaced."""
    rows = conn.execute(
        "SELECT t.tgname, p.proname, p.prosrc FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_proc p ON p.oid = t.tgfoid "
        "WHERE n.nspname = %s AND NOT t.tgisinternal AND t.tgenabled = 'A'",
        (schema,),
    ).fetchall()
    intact = {str(name) for name, fname, src in rows if FUNCTIONS.get(str(fname)) == str(src)}
    return [name for name in TRIGGERS if name not in intact]
