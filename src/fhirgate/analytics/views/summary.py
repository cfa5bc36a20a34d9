"""patient_activity: a per-patient summary of the appointment, claim_line and invoice_line views, kept current.

One row per patient with any appointment, claim line or invoice line: the first fulfilled appointment
start, the latest one and its practitioner ('' when none; ties: the greatest practitioner id), the latest start or
created date over all appointments, and the lifetime billed amount (claim and invoice lines not draft,
cancelled or entered-in-error: reports.common.NOT_BILLED_SQL). The practice reports read it to avoid
scanning the views per patient. It is recomputed for the patients a write touches, after that
transaction's view rows are applied, and rebuilt with the views.
"""

# ruff: noqa: S608 - SQL built from constants and ? placeholders only.

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import apsw

NAME = "patient_activity"
SOURCES = ("appointment", "claim_line", "invoice_line")
COLUMNS = (
    ("patient_id", "TEXT"),
    ("first_fulfilled_start", "TEXT"),
    ("last_fulfilled_start", "TEXT"),
    ("last_fulfilled_practitioner", "TEXT"),
    ("last_activity", "TEXT"),
    ("lifetime_billed", "REAL"),
)
# Statuses of claim/invoice lines that are not billed (same as reports.common.NOT_BILLED_SQL).
_NOT_BILLED = "('draft', 'cancelled', 'entered-in-error')"

_DDL = (
    f"CREATE TABLE {NAME}(patient_id TEXT PRIMARY KEY, first_fulfilled_start TEXT, last_fulfilled_start TEXT, "
    "last_fulfilled_practitioner TEXT, last_activity TEXT, "
    "lifetime_billed REAL NOT NULL) WITHOUT ROWID"
)
_INDEXES = (
    f'CREATE INDEX IF NOT EXISTS "{NAME}$first_fulfilled_start" ON {NAME}(first_fulfilled_start)',
    f'CREATE INDEX IF NOT EXISTS "{NAME}$last_fulfilled_start" ON {NAME}(last_fulfilled_start)',
    f'CREATE INDEX IF NOT EXISTS "{NAME}$lifetime_billed" ON {NAME}(lifetime_billed)',
)


def _select(where_appt: str, where_line: str) -> str:
    """The summary rows of the patients matching the conditions (applied to each source view)."""
    return (
        "WITH a AS (SELECT patient_id, min(CASE WHEN status = 'fulfilled' THEN start_time END) AS ff, "
        "max(CASE WHEN status = 'fulfilled' THEN start_time || '|' || coalesce(practitioner_id, '') END) AS lf, "
        "max(start_time) AS ms, max(created) AS mc FROM appointment "
        f"WHERE patient_id IS NOT NULL{where_appt} GROUP BY patient_id), "
        "c AS (SELECT patient_id, sum(amount) AS s FROM claim_line "
        f"WHERE patient_id IS NOT NULL AND status NOT IN {_NOT_BILLED}{where_line} GROUP BY patient_id), "
        "i AS (SELECT patient_id, sum(amount) AS s FROM invoice_line "
        f"WHERE patient_id IS NOT NULL AND status NOT IN {_NOT_BILLED}{where_line} GROUP BY patient_id), "
        "ids AS (SELECT patient_id FROM appointment WHERE patient_id IS NOT NULL" + where_appt + " "
        "UNION SELECT patient_id FROM claim_line WHERE patient_id IS NOT NULL" + where_line + " "
        "UNION SELECT patient_id FROM invoice_line WHERE patient_id IS NOT NULL" + where_line + ") "
        "SELECT ids.patient_id, a.ff, substr(a.lf, 1, instr(a.lf, '|') - 1), substr(a.lf, instr(a.lf, '|') + 1), "
        "CASE WHEN a.ms IS NULL THEN a.mc WHEN a.mc IS NULL THEN a.ms "
        "ELSE max(a.ms, a.mc) END, coalesce(c.s, 0) + coalesce(i.s, 0) FROM ids "
        "LEFT JOIN a ON a.patient_id = ids.patient_id LEFT JOIN c ON c.patient_id = ids.patient_id "
        "LEFT JOIN i ON i.patient_id = ids.patient_id"
    )


def has_sources(tables: Iterable[str]) -> bool:
    """Whether every source view table exists (else there is nothing to summarize)."""
    present = set(tables)
    return all(s in present for s in SOURCES)


def current(conn: apsw.Connection) -> bool:
    """Whether the summary table exists with the expected layout."""
    cols = [(str(r[1]), str(r[2]).upper()) for r in conn.execute(f"PRAGMA main.table_info({NAME})")]
    return cols == list(COLUMNS)


def rebuild(conn: apsw.Connection) -> int:
    """Drop and recompute the whole summary from the source views; returns its rows."""
    conn.execute(f"DROP TABLE IF EXISTS {NAME}")
    conn.execute(_DDL)
    conn.execute(f"INSERT INTO {NAME} " + _select("", ""))
    for ddl in _INDEXES:
        conn.execute(ddl)
    row: Any = conn.execute(f"SELECT count(*) FROM {NAME}").fetchone()
    return int(row[0])


def patients_of(conn: apsw.Connection, rids_by_view: Mapping[str, Sequence[int]]) -> set[str]:
    """The patients of the current rows of the given resources (`_rid`s) in the source views."""
    out: set[str] = set()
    for view, rids in rids_by_view.items():
        if view not in SOURCES or not rids:
            continue
        sql = f'SELECT patient_id FROM "{view}" WHERE _rid = ? AND patient_id IS NOT NULL'
        for rid in rids:
            out.update(str(r[0]) for r in conn.execute(sql, (rid,)))
    return out


def refresh(conn: apsw.Connection, patients: Iterable[str]) -> None:
    """Recompute the summary rows of `patients` from the source views (a patient with no rows left has none)."""
    ids = sorted(set(patients))
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        cond = f" AND patient_id IN ({marks})"
        conn.execute(f"DELETE FROM {NAME} WHERE patient_id IN ({marks})", chunk)
        conn.execute(f"INSERT INTO {NAME} " + _select(cond, cond), chunk * 6)
