"""What the per-day derived tables share (appointment_daily in rollup.py, billing_daily in billing.py).

Both leave out opted-out patients, read from the consent view with one query (so the SQL sandbox can check the
set a table leaves out against a caller's exclusions), are versioned by the name of their index (an older
table is rebuilt when the store opens), and are rebuilt whole by one INSERT ... SELECT.
"""

# ruff: noqa: S608 - SQL built from module constants only.

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import apsw

CONSENT = "consent"
# The opted-out patients: an active privacy Consent whose policy rule is OPTOUT/OPTOUTE (the simple case of
# core.policy.consent's full opt-out), from the consent view; always `main.` (the SQL sandbox reads this too,
# where temp views of the same names may exist).
OPTOUTS_SQL = (
    "SELECT patient_id FROM main.consent WHERE status = 'active' AND policy_rule IN ('OPTOUT', 'OPTOUTE') "
    "AND (scope IS NULL OR scope = 'patient-privacy') AND patient_id IS NOT NULL"
)


def has_table(conn: apsw.Connection, name: str) -> bool:
    """Whether `main` holds a table of that name."""
    found = conn.execute("SELECT 1 FROM main.sqlite_schema WHERE type = 'table' AND name = ?", (name,)).fetchone()
    return found is not None


def optout_condition(conn: apsw.Connection) -> str:
    """The SQL condition leaving opted-out patients' rows out ('' when the consent view is not kept)."""
    if not has_table(conn, CONSENT):
        return ""
    return f" AND (patient_id IS NULL OR patient_id NOT IN ({OPTOUTS_SQL}))"


def is_current(conn: apsw.Connection, name: str, columns: Sequence[tuple[str, str]], index: str) -> bool:
    """Whether the table exists with the expected layout and version (its versioned index)."""
    cols = [(str(r[1]), str(r[2]).upper()) for r in conn.execute(f"PRAGMA main.table_info({name})")]
    indexed = conn.execute("SELECT 1 FROM main.sqlite_schema WHERE type = 'index' AND name = ?", (index,)).fetchone()
    return cols == list(columns) and indexed is not None


def left_out(conn: apsw.Connection, name: str, current: bool) -> frozenset[str] | None:
    """The patients the table leaves out now (None when there is no table; empty for an older version)."""
    if not has_table(conn, name):
        return None
    if not current or not has_table(conn, CONSENT):
        return frozenset()
    return frozenset(str(r[0]) for r in conn.execute(OPTOUTS_SQL))


def recreate(conn: apsw.Connection, name: str, ddl: str, indexes: Sequence[str], select: str) -> int:
    """Drop the table, recompute it whole from `select`, index it; returns its rows."""
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.execute(ddl)
    conn.execute(f"INSERT INTO {name} " + select)
    for statement in indexes:
        conn.execute(statement)
    row: Any = conn.execute(f"SELECT count(*) FROM {name}").fetchone()
    return int(row[0])
