"""One audit chain per test, SQLite or PostgreSQL, and an attacker who rewrites it behind the log's back.

The attacker has write access to the database AND the chain key: they delete the newest records and
re-MAC the head anchor (and reset SQLite's AUTOINCREMENT counter), so the shortened chain verifies on its
own. Only a head line saved earlier can show what was lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import apsw
import psycopg
from psycopg import sql

from fhirgate.audit.chain import AuditStore, ChainKey
from fhirgate.audit.log import TRIGGERS as SQLITE_TRIGGERS
from fhirgate.audit.pg_schema import TRIGGERS as PG_TRIGGERS
from fhirgate.audit.record import AuditRecord
from fhirgate.config import DataDir
from fhirgate.location import open_location
from fhirgate.location.backends import AUDIT_CHAIN_SECRET, open_audit
from pg_server import POSTGRES_URL


def make_record(i: int, **overrides: Any) -> AuditRecord:
    """A read record for patient p{i}; keyword arguments override AuditRecord.new parameters."""
    params: dict[str, Any] = {
        "request_id": f"req-{i}",
        "transport": "http",
        "method": "tools/call",
        "name": "read_resource",
        "interaction": "read",
        "balp_kind": "read",
        "outcome": "success",
        "resource_type": "Patient",
        "references": [f"Patient/p{i}"],
        "patients": [f"p{i}"],
        "latency_ms": 1.0,
    }
    params.update(overrides)
    return AuditRecord.new(**params)


@dataclass(frozen=True)
class Backend:
    """A location holding one audit chain: `data` is what `--data` takes, for the CLI and for opening."""

    kind: str
    data: str
    schema: str = ""

    def open(self) -> AuditStore:
        """The location's audit log, opened as the CLI opens it."""
        return open_audit(open_location(self.data))

    def append(self, start: int, n: int, **overrides: Any) -> list[int]:
        """Append n records numbered from `start`, as the server would; their seqs."""
        log = self.open()
        try:
            return [log.append(make_record(i, **overrides)) for i in range(start, start + n)]
        finally:
            log.close()

    def head_line(self) -> str:
        """What `fhirgate audit head` prints now."""
        log = self.open()
        try:
            return log.head_line()
        finally:
            log.close()

    def _chain(self) -> tuple[ChainKey, list[tuple[Any, ...]]]:
        log = self.open()
        try:
            key = ChainKey(open_location(self.data).secret(AUDIT_CHAIN_SECRET), log.chain_id)
            return key, list(log.raw_rows())
        finally:
            log.close()

    def truncate(self, keep: int) -> None:
        """Delete every record after seq `keep` and re-MAC the head anchor to seq `keep` with the chain key."""
        key, rows = self._chain()
        hashes = {int(r[0]): str(r[2]) for r in rows}
        line = key.anchor_line(keep, hashes[keep] if keep else key.genesis)
        if self.kind == "sqlite":
            path = DataDir(self.data).audit_path
            _sqlite_tamper(
                path,
                ("DELETE FROM audit_log WHERE seq > ?", (keep,)),
                ("UPDATE sqlite_sequence SET seq = ? WHERE name = 'audit_log'", (keep,)),
            )
            path.with_suffix(".head").write_bytes(line)
        else:
            seq, hash_, mac = line.decode().split()
            _pg_tamper(
                self.schema,
                ("DELETE FROM audit_log WHERE seq > %s", (keep,)),
                ("UPDATE audit_head SET seq = %s, hash = %s, mac = %s", (int(seq), hash_, mac)),
            )

    def edit_record(self, seq: int) -> None:
        """Change the stored JSON of record `seq` without the key (its hash no longer verifies)."""
        if self.kind == "sqlite":
            sql_text = "UPDATE audit_log SET record = replace(record, 'Patient/p', 'Patient/x') WHERE seq = ?"
            _sqlite_tamper(DataDir(self.data).audit_path, (sql_text, (seq,)))
        else:
            sql_text = "UPDATE audit_log SET record = replace(record, 'Patient/p', 'Patient/x') WHERE seq = %s"
            _pg_tamper(self.schema, (sql_text, (seq,)))


Statement = tuple[str, tuple[Any, ...]]


def _sqlite_tamper(path: Any, *statements: Statement) -> None:
    """Drop the append-only triggers, run the statements, put the triggers back (hiding the traces)."""
    conn = apsw.Connection(str(path))
    conn.setbusytimeout(5000)
    try:
        for name in SQLITE_TRIGGERS:
            conn.execute(f"DROP TRIGGER IF EXISTS {name}")
        for text, params in statements:
            conn.execute(text, params)
        for create in SQLITE_TRIGGERS.values():
            conn.execute(create)
    finally:
        conn.close()


def _pg_tamper(schema: str, *statements: Statement) -> None:
    """As table owner: disable the audit triggers, run the statements, re-enable them ALWAYS."""
    tables = sorted({table for table, _ in PG_TRIGGERS.values()})
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        for table in tables:
            conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(sql.Identifier(table)))
        for text, params in statements:
            conn.execute(text.encode(), params)
        for name, (table, _) in PG_TRIGGERS.items():
            conn.execute(
                sql.SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(sql.Identifier(table), sql.Identifier(name))
            )
