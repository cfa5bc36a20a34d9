"""appointment_daily: per-day counts of the appointment view by provider, service, hour and reason, kept current.

The period reports (no-shows, service volume, provider utilization, cancellations) sum these rows instead
of scanning every appointment of the period: a day holds one row per (dimension, status, key), so a
90-day report reads a few thousand rows rather than tens of thousands. Dimensions:
- `practitioner`: key = practitioner_id (the rows of this dimension also give per-day totals);
- `service`: key = service_code, label = the greatest service_display of the group;
- `hour`: key = the hour of the local start time (text, '09'), NULL when the start has no time;
- `reason`: key = cancel_reason, cancelled appointments only.
`day` is the local start date as written (substr(start_time, 1, 10)), the same day every report compares
periods against; `minutes` sums minutesDuration, else end - start in minutes (NULL when neither is known).
A write recomputes the days its appointments were on and are now on, inside the write's transaction.
"""

# ruff: noqa: S608 - SQL built from constants and ? placeholders only.

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import apsw

NAME = "appointment_daily"
SOURCES = ("appointment",)
COLUMNS = (
    ("day", "TEXT"),
    ("dim", "TEXT"),
    ("status", "TEXT"),
    ("key", "TEXT"),
    ("label", "TEXT"),
    ("n", "INTEGER"),
    ("minutes", "REAL"),
)
DIMENSIONS = {
    "practitioner": ("practitioner_id", "NULL"),
    "service": ("service_code", "max(service_display)"),
    "hour": ("CASE WHEN length(start_time) >= 13 THEN substr(start_time, 12, 2) END", "NULL"),
    "reason": ("cancel_reason", "NULL"),
}
_MINUTES = "coalesce(minutes, round((julianday(end_time) - julianday(start_time)) * 1440))"
_DDL = (
    f"CREATE TABLE {NAME}(day TEXT, dim TEXT NOT NULL, status TEXT, key TEXT, label TEXT, "
    "n INTEGER NOT NULL, minutes REAL)"
)
# Covering index: a period report reads one dimension's rows of a day range and nothing else.
_INDEXES = (f'CREATE INDEX IF NOT EXISTS "{NAME}$dim_day" ON {NAME}(dim, day, status, key, n, minutes, label)',)


def _select(where: str) -> str:
    """The rollup rows of the appointments matching `where` (applied to every dimension)."""
    parts = []
    for dim, (key, label) in DIMENSIONS.items():
        cond = where + (" AND status = 'cancelled'" if dim == "reason" else "")
        parts.append(
            f"SELECT substr(start_time, 1, 10) AS d, '{dim}', status, {key} AS k, {label}, count(*), "
            f"sum({_MINUTES}) FROM appointment WHERE 1{cond} GROUP BY d, status, k"
        )
    return " UNION ALL ".join(parts)


def has_sources(tables: Iterable[str]) -> bool:
    """Whether the appointment view is maintained (else there is nothing to roll up)."""
    return all(s in set(tables) for s in SOURCES)


def current(conn: apsw.Connection) -> bool:
    """Whether the rollup table exists with the expected layout and index."""
    cols = [(str(r[1]), str(r[2]).upper()) for r in conn.execute(f"PRAGMA main.table_info({NAME})")]
    indexed = conn.execute(
        "SELECT 1 FROM sqlite_schema WHERE type = 'index' AND name = ?", (f"{NAME}$dim_day",)
    ).fetchone()
    return cols == list(COLUMNS) and indexed is not None


def rebuild(conn: apsw.Connection) -> int:
    """Drop and recompute the whole rollup from the appointment view; returns its rows."""
    conn.execute(f"DROP TABLE IF EXISTS {NAME}")
    conn.execute(_DDL)
    conn.execute(f"INSERT INTO {NAME} " + _select(""))
    for ddl in _INDEXES:
        conn.execute(ddl)
    row: Any = conn.execute(f"SELECT count(*) FROM {NAME}").fetchone()
    return int(row[0])


def days_of(conn: apsw.Connection, rids_by_view: Mapping[str, Sequence[int]]) -> set[str | None]:
    """The local start days (None: no start) of the current appointment rows of the given resources."""
    out: set[str | None] = set()
    for rid in rids_by_view.get("appointment", ()):
        for (day,) in conn.execute("SELECT substr(start_time, 1, 10) FROM appointment WHERE _rid = ?", (rid,)):
            out.add(None if day is None else str(day))
    return out


def refresh(conn: apsw.Connection, days: Iterable[str | None]) -> None:
    """Recompute the rollup rows of `days` from the appointment view (a day with no appointments has none)."""
    for day in sorted(days, key=lambda d: d or ""):
        if day is None:
            conn.execute(f"DELETE FROM {NAME} WHERE day IS NULL")
            conn.execute(f"INSERT INTO {NAME} " + _select(" AND start_time IS NULL"))
            continue
        conn.execute(f"DELETE FROM {NAME} WHERE day = ?", (day,))
        # The range on start_time picks the day's rows through the view's start_time index.
        cond = " AND start_time >= ? AND start_time < ? AND substr(start_time, 1, 10) = ?"
        conn.execute(f"INSERT INTO {NAME} " + _select(cond), (day, day + "\uffff", day) * len(DIMENSIONS))
