"""The audit log: an append-only, HMAC-chained table in its own SQLite database, apart from clinical data.

HIPAA 45 CFR 164.312(b) (audit controls) asks that activity in systems holding ePHI be recorded and
examinable; this module records it so that tampering can be proven afterwards.

Chain: record `seq` has `hash = HMAC-SHA256(chain_key, prev_hash || seq as 8 bytes || record JSON)`
and `prev_hash` is the previous record's hash (the first links to a per-chain genesis value). The key
lives in keys/, not in the database, so someone able to write audit.db but not read the key cannot
re-forge the chain after editing, inserting or re-ordering records.

Truncation: deleting the *last* records leaves a valid shorter chain, so every append also writes a
head anchor file (default `audit.head` beside the database: `seq hash mac`, MAC-keyed with the chain
key) inside the same write transaction. Verification compares the chain's end to that anchor, and to
SQLite's AUTOINCREMENT counter. Guarantee: without the chain key, removing records at the end is
detected unless the attacker also replaces the anchor file with an older copy they kept; keep the
anchor on storage the database writer cannot roll back (another volume, WORM, or ship it off-host)
when that matters. The anchor is written just before COMMIT: a crash between the two, or a power
loss with synchronous=NORMAL, makes verification report the lost records (as truncated/deleted)
rather than hiding them.

Appends take `BEGIN IMMEDIATE`, so several processes may append to one chain; any failure raises
AuditError and the request being recorded must fail with it. The chain arithmetic is shared with the
PostgreSQL log (audit/chain.py, audit/pg_log.py).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from pathlib import Path
from typing import Any

import apsw

from fhirgate.audit.chain import ANCHOR_LEN, AuditEntry, ChainKey, ChainReader, HeadAnchor, check_chain_key
from fhirgate.audit.record import AuditRecord
from fhirgate.database import open_sqlite
from fhirgate.errors import AuditError, StoreError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_log(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_meta(name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
TRIGGERS: dict[str, str] = {
    f"{table}_no_{op.lower()}": (
        f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
    )
    for table in ("audit_log", "audit_meta")
    for op in ("UPDATE", "DELETE")
}
__all__ = ["TRIGGERS", "AuditEntry", "AuditLog", "HeadAnchor"]


class AuditLog(ChainReader):
    """An append-only hash-chained audit log in its own (optionally encrypted) SQLite database."""

    def __init__(
        self,
        path: Path,
        *,
        key: str | None = None,
        chain_key: bytes,
        head_path: Path | None = None,
        durable: bool = False,
    ) -> None:
        self._key = check_chain_key(chain_key)
        self.path = Path(path)
        self.head_path = Path(head_path) if head_path else self.path.with_suffix(".head")
        self._durable = durable
        self._lock = threading.Lock()
        self._closed = False
        try:
            self._conn = open_sqlite(self.path, key=key)
            if durable:
                self._conn.execute("PRAGMA synchronous=FULL")
            self.chain_id = self._init_schema()
        except StoreError as exc:
            raise AuditError(f"audit log unavailable: {exc.message}") from None
        except apsw.Error as exc:
            raise AuditError(f"audit log unavailable: {type(exc).__name__}") from None
        self._chain = ChainKey(self._key, self.chain_id)
        self.genesis = self._chain.genesis
        try:
            self._chain.require_key_check(self._meta("key_check"))
        except AuditError:
            self._conn.close()
            raise

    def chain_hash(self, prev_hash: str, seq: int, record_json: bytes) -> str:
        """HMAC-SHA256(chain_key, prev_hash || seq || record JSON), hex; fixed-width fields keep it unambiguous."""
        return self._chain.chain_hash(prev_hash, seq, record_json)

    # -- schema ------------------------------------------------------------------------------

    def _init_schema(self) -> str:
        """Create tables and triggers on a fresh database; an existing one is left as found (verify checks it)."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            fresh = not conn.execute("SELECT 1 FROM sqlite_schema WHERE type='table' AND name='audit_log'").fetchall()
            conn.execute(_SCHEMA)
            if fresh:
                for sql in TRIGGERS.values():
                    conn.execute(sql)
            row = conn.execute("SELECT value FROM audit_meta WHERE name='chain_id'").fetchone()
            if row is None:
                chain_id = secrets.token_hex(16)
                self.chain_id = chain_id
                conn.execute(
                    "INSERT INTO audit_meta(name, value) VALUES ('chain_id', ?), ('key_check', ?)",
                    (chain_id, ChainKey(self._key, chain_id).key_check()),
                )
            else:
                chain_id = str(row[0])
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(apsw.Error):
                conn.execute("ROLLBACK")
            raise
        return chain_id

    def _meta(self, name: str) -> str:
        row = self._conn.execute("SELECT value FROM audit_meta WHERE name=?", (name,)).fetchone()
        return str(row[0]) if row else ""

    def missing_triggers(self) -> list[str]:
        """Names of the append-only triggers that are no longer in the schema."""
        with self._lock:
            self._check_open()
            rows = self._conn.execute("SELECT name FROM sqlite_schema WHERE type='trigger'").fetchall()
        present = {str(r[0]) for r in rows}
        return [name for name in TRIGGERS if name not in present]

    # -- head anchor -------------------------------------------------------------------------

    def _open_anchor(self) -> int:
        return os.open(self.head_path, os.O_RDWR | os.O_CREAT, 0o600)

    def read_anchor(self) -> HeadAnchor | None:
        """The head anchor, None when the file is absent or empty; AuditError when it is forged or damaged."""
        try:
            data = self.head_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise AuditError(f"head anchor {self.head_path.name} unreadable: {exc.strerror}") from None
        return self._chain.parse_anchor(data, self.head_path.name)

    def head_line(self) -> str:
        """The MAC'd head anchor line (`seq hash mac`) to copy off-host; AuditError when none is valid."""
        anchor = self.read_anchor()
        if anchor is None:
            raise AuditError(f"head anchor {self.head_path.name} is missing")
        return self._chain.anchor_line(anchor.seq, anchor.hash).decode().rstrip("\n")

    def _write_anchor(self, fd: int, line: bytes) -> None:
        os.pwrite(fd, line, 0)
        if os.fstat(fd).st_size != len(line):
            os.ftruncate(fd, len(line))
        if self._durable:
            os.fsync(fd)

    # -- append ------------------------------------------------------------------------------

    def append(self, record: AuditRecord) -> int:
        """Append one record and return its seq; raises AuditError on any failure (the request must fail)."""
        if not isinstance(record, AuditRecord):
            raise AuditError("append needs an AuditRecord")
        data = record.to_json()
        with self._lock:
            self._check_open()
            conn = self._conn
            fd = -1
            old_anchor = b""
            anchor_written = False
            try:
                fd = self._open_anchor()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    old_anchor = os.pread(fd, ANCHOR_LEN + 1, 0)
                    seq, prev = self._next_link(old_anchor)
                    digest = self.chain_hash(prev, seq, data)
                    conn.execute(
                        "INSERT INTO audit_log(seq, prev_hash, hash, record) VALUES (?, ?, ?, ?)",
                        (seq, prev, digest, data.decode()),
                    )
                    self._write_anchor(fd, self._chain.anchor_line(seq, digest))
                    anchor_written = True
                    conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(apsw.Error):
                        conn.execute("ROLLBACK")
                    if anchor_written:
                        with contextlib.suppress(OSError):
                            self._write_anchor(fd, old_anchor)
                    raise
            except AuditError:
                raise
            except apsw.Error as exc:
                raise AuditError(f"audit append failed: {type(exc).__name__}") from None
            except OSError as exc:
                raise AuditError(f"audit append failed: head anchor {exc.strerror}") from None
            finally:
                if fd >= 0:
                    os.close(fd)
        return seq

    def _next_link(self, anchor_bytes: bytes) -> tuple[int, str]:
        """The seq and prev_hash for the next record, trusting the MAC'd anchor over the database."""
        where = self.head_path.name
        anchor = self._chain.parse_anchor(anchor_bytes, where)
        row = self._conn.execute(
            "SELECT seq, hash, prev_hash, record FROM audit_log ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        counter = self._conn.execute("SELECT seq FROM sqlite_sequence WHERE name='audit_log'").fetchone()
        return self._chain.next_link(anchor, row, where, int(counter[0]) if counter else 0)

    def reanchor(self) -> int:
        """Operator action after a reviewed verify: point the head anchor at the current last record."""
        with self._lock:
            self._check_open()
            fd = self._open_anchor()
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    row = self._conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
                    seq, hash_ = (int(row[0]), str(row[1])) if row else (0, self.genesis)
                    self._write_anchor(fd, self._chain.anchor_line(seq, hash_))
                finally:
                    self._conn.execute("COMMIT")
            except (apsw.Error, OSError) as exc:
                raise AuditError(f"reanchor failed: {type(exc).__name__}") from None
            finally:
                os.close(fd)
        return seq

    # -- reading -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise AuditError("audit log is closed")

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            self._check_open()
            try:
                return [tuple(r) for r in self._conn.execute(sql, params).fetchall()]
            except apsw.Error as exc:
                raise AuditError(f"audit log read failed: {type(exc).__name__}") from None

    def snapshot_head(self) -> tuple[int, int, HeadAnchor | AuditError | None]:
        """(max seq, AUTOINCREMENT counter, anchor or the error reading it), read under the write lock
        so no append is half-way between writing the anchor and committing."""
        with self._lock:
            self._check_open()
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    row = self._conn.execute("SELECT max(seq) FROM audit_log").fetchone()
                    counter = self._conn.execute("SELECT seq FROM sqlite_sequence WHERE name='audit_log'").fetchone()
                    anchor: HeadAnchor | AuditError | None
                    try:
                        anchor = self.read_anchor()
                    except AuditError as exc:
                        anchor = exc
                finally:
                    self._conn.execute("COMMIT")
            except apsw.Error as exc:
                raise AuditError(f"audit log read failed: {type(exc).__name__}") from None
        max_seq = int(row[0]) if row and row[0] is not None else 0
        return max_seq, int(counter[0]) if counter else 0, anchor

    def close(self) -> None:
        """Close the database; later calls raise AuditError."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
