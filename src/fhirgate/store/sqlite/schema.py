"""The SQLite store schema: current resources, superseded versions, one search-index table per parameter type.

Index tables are WITHOUT ROWID with the resource rowid first in the primary key, so rows of one resource
sit together (cheap appends on load, cheap deletes on update) and one secondary "value" index per table
serves searches (param id first, so a lookup is already restricted to one resource type). NULL system,
code, target type and target id are stored as "" because primary-key columns of WITHOUT ROWID tables
cannot be NULL; query.py maps them back.
"""

from __future__ import annotations

import apsw

SCHEMA_VERSION = "1"

# Table name per IndexRows field.
INDEX_TABLES: dict[str, str] = {
    "token": "ix_token",
    "token_text": "ix_token_text",
    "string": "ix_string",
    "date": "ix_date",
    "reference": "ix_reference",
    "quantity": "ix_quantity",
    "number": "ix_number",
    "uri": "ix_uri",
}

# Tables keyed by resource rowid whose rows go when a resource is updated or deleted.
ROW_TABLES = (*INDEX_TABLES.values(), "compartment")

_TABLES = """
CREATE TABLE IF NOT EXISTS store_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS resources(
    rid INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    lu TEXT NOT NULL,
    lue REAL NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    body TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS resources_type_id ON resources(type, id);
CREATE INDEX IF NOT EXISTS resources_type_live ON resources(type, deleted);
CREATE TABLE IF NOT EXISTS history(
    rid INTEGER NOT NULL,
    version INTEGER NOT NULL,
    lu TEXT NOT NULL,
    deleted INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (rid, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS params(
    pid INTEGER PRIMARY KEY,
    rtype TEXT NOT NULL,
    code TEXT NOT NULL,
    UNIQUE (rtype, code)
);
CREATE TABLE IF NOT EXISTS ix_token(
    rid INTEGER NOT NULL, pid INTEGER NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL,
    PRIMARY KEY (rid, pid, code, system)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ix_token_text(
    rid INTEGER NOT NULL, pid INTEGER NOT NULL, text TEXT NOT NULL,
    PRIMARY KEY (rid, pid, text)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ix_string(
    rid INTEGER NOT NULL, pid INTEGER NOT NULL, norm TEXT NOT NULL, exact TEXT NOT NULL,
    PRIMARY KEY (rid, pid, norm, exact)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ix_date(
    rid INTEGER NOT NULL, pid INTEGER NOT NULL, low REAL NOT NULL, high REAL NOT NULL,
    PRIMARY KEY (rid, pid, low, high)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ix_reference(
    rid INTEGER NOT NULL, pid INTEGER NOT NULL, ttype TEXT NOT NULL, tid TEXT NOT NULL, raw TEXT NOT NULL,
    PRIMARY KEY (rid, pid, raw, ttype, tid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ix_quantity(
    rid INTEGER NOT NULL, pid INTEGER NOT NULL, value REAL NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL,
    PRIMARY KEY (rid, pid, value, system, code)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ix_number(
    rid INTEGER NOT NULL, pid INTEGER NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (rid, pid, value)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ix_uri(
    rid INTEGER NOT NULL, pid INTEGER NOT NULL, uri TEXT NOT NULL,
    PRIMARY KEY (rid, pid, uri)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS compartment(
    rid INTEGER NOT NULL, patient TEXT NOT NULL,
    PRIMARY KEY (rid, patient)
) WITHOUT ROWID;
"""

# Secondary indexes that serve searches; bulk loads may drop and rebuild them (SqliteStore.bulk()).
VALUE_INDEXES: dict[str, str] = {
    "ix_token_v": "ix_token(pid, code, system)",
    "ix_token_text_v": "ix_token_text(pid, text)",
    "ix_string_v": "ix_string(pid, norm)",
    "ix_date_v": "ix_date(pid, low, high)",
    "ix_reference_v": "ix_reference(pid, tid, ttype)",
    "ix_quantity_v": "ix_quantity(pid, value)",
    "ix_number_v": "ix_number(pid, value)",
    "ix_uri_v": "ix_uri(pid, uri)",
    "compartment_v": "compartment(patient)",
}

# Kept during an initial load: conditional references (`Practitioner?identifier=s|v`) resolve through it.
LOOKUP_INDEXES = frozenset({"ix_token_v"})


def create_schema(conn: apsw.Connection) -> None:
    """Create tables and indexes when absent; refuse a database written by another schema version."""
    with conn:
        conn.execute(_TABLES)
        create_value_indexes(conn)
        row = conn.execute("SELECT value FROM store_meta WHERE key='schema'").fetchone()
        if row is None:
            conn.execute("INSERT INTO store_meta(key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
        elif row[0] != SCHEMA_VERSION:
            raise ValueError(f"store schema {row[0]} is not the supported version {SCHEMA_VERSION}")


def create_value_indexes(conn: apsw.Connection) -> None:
    """Create every search index that is missing (idempotent)."""
    for name, target in VALUE_INDEXES.items():
        conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {target}")


def drop_value_indexes(conn: apsw.Connection, *, keep: frozenset[str] = frozenset()) -> None:
    """Drop the search indexes (before a bulk load into a large store), except those named in `keep`."""
    for name in VALUE_INDEXES:
        if name not in keep:
            conn.execute(f"DROP INDEX IF EXISTS {name}")


def begin_initial_load(conn: apsw.Connection) -> None:
    """Before a first load into an empty store: drop the value indexes but LOOKUP_INDEXES, stop fsyncing.

    The default WAL auto-checkpoint (1000 pages) is kept: measured, a large one only moves the copying
    to the end and costs more there (benchmarks/ingest.py, docs/benchmarks.md "Ingest").
    """
    drop_value_indexes(conn, keep=LOOKUP_INDEXES)
    conn.execute("PRAGMA synchronous=OFF")


def end_initial_load(conn: apsw.Connection) -> None:
    """After it: rebuild the indexes, sample statistics, and make everything durable (fsync + checkpoint)."""
    with conn:
        create_value_indexes(conn)
    # Sampled statistics (SQLite's advice for PRAGMA optimize): a full ANALYZE reads every index.
    conn.execute("PRAGMA analysis_limit=1000")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA analysis_limit=0")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
