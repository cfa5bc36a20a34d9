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

optout_excluded: appointments of patients who opted out of AI access are left out of every row, so a
practice-wide caller whose only exclusions are the opt-outs can still read the rollup (analytics.sql.policy
offers it only when the caller's excluded patients equal `excluded_patients`). Opted out here is the simple
case of core.policy.consent's full opt-out, as far as the `consent` view can tell: a Consent with status
active, scope patient-privacy (or none) and policyRule OPTOUT or OPTOUTE (v3-ActCode). Its period, nested
provisions and an unconditional deny root without policyRule are not visible in the view: a caller whose
opt-out set differs for those reasons is simply not offered the rollup and its reports scan the views.
Appointments with no patient are kept. A write of a Consent recomputes the days of its patient's
appointments.

labels_left_out: appointments carrying a security label in analytics.views.summary.LEFT_OUT_LABELS (the
default sensitive set) are left out too, as in patient_activity (see that module): a write changing an
appointment's labels replaces its view rows and recomputes its day, after its index rows are written.
The index name carries the rollup's version (v2: opt-outs left out; v3: labelled appointments left out),
so a store whose rollup predates it is rebuilt when it opens.
"""

# ruff: noqa: S608 - SQL built from constants and ? placeholders only.

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import apsw

from fhirgate.analytics.views.derived import CONSENT, is_current, left_out, optout_condition, recreate
from fhirgate.analytics.views.summary import unlabelled

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
INDEX = f"{NAME}$dim_day_v3"
_INDEXES = (f'CREATE INDEX IF NOT EXISTS "{INDEX}" ON {NAME}(dim, day, status, key, n, minutes, label)',)


def _select(where: str, optout: str = "", *, whole: bool = False) -> str:
    """The rollup rows of the unlabelled appointments matching `where` and `optout` (in every dimension);
    `whole` for a rebuild (summary.unlabelled)."""
    parts = []
    unlabelled_cond = unlabelled("appointment", "Appointment", whole=whole)
    for dim, (key, label) in DIMENSIONS.items():
        cond = where + optout + unlabelled_cond + (" AND status = 'cancelled'" if dim == "reason" else "")
        parts.append(
            f"SELECT substr(start_time, 1, 10) AS d, '{dim}', status, {key} AS k, {label}, count(*), "
            f"sum({_MINUTES}) FROM appointment WHERE 1{cond} GROUP BY d, status, k"
        )
    return " UNION ALL ".join(parts)


def has_sources(tables: Iterable[str]) -> bool:
    """Whether the appointment view is maintained (else there is nothing to roll up)."""
    return all(s in set(tables) for s in SOURCES)


def current(conn: apsw.Connection) -> bool:
    """Whether the rollup exists with the expected layout and version."""
    return is_current(conn, NAME, COLUMNS, INDEX)


def excluded_patients(conn: apsw.Connection) -> frozenset[str] | None:
    """The patients the rollup leaves out now (None when there is none; empty for an older version)."""
    return left_out(conn, NAME, current(conn))


def rebuild(conn: apsw.Connection) -> int:
    """Drop and recompute the whole rollup from the appointment view; returns its rows."""
    return recreate(conn, NAME, _DDL, _INDEXES, _select("", optout_condition(conn), whole=True))


def days_of(conn: apsw.Connection, rids_by_view: Mapping[str, Sequence[int]]) -> set[str | None]:
    """The local start days (None: no start) of the current appointment rows of the given resources."""
    out: set[str | None] = set()
    for rid in rids_by_view.get("appointment", ()):
        for (day,) in conn.execute("SELECT substr(start_time, 1, 10) FROM appointment WHERE _rid = ?", (rid,)):
            out.add(None if day is None else str(day))
    return out


def consent_patients(conn: apsw.Connection, rids_by_view: Mapping[str, Sequence[int]]) -> set[str]:
    """The patients of the current consent view rows of the given resources (`_rid`s)."""
    out: set[str] = set()
    sql = f"SELECT patient_id FROM {CONSENT} WHERE _rid = ? AND patient_id IS NOT NULL"
    for rid in rids_by_view.get(CONSENT, ()):
        out.update(str(r[0]) for r in conn.execute(sql, (rid,)))
    return out


def days_of_patients(conn: apsw.Connection, patients: Iterable[str]) -> set[str | None]:
    """The local start days (None: no start) of the current appointments of `patients`."""
    out: set[str | None] = set()
    ids = sorted(set(patients))
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        sql = f"SELECT DISTINCT substr(start_time, 1, 10) FROM appointment WHERE patient_id IN ({marks})"
        out.update(None if day is None else str(day) for (day,) in conn.execute(sql, chunk))
    return out


def refresh(conn: apsw.Connection, days: Iterable[str | None]) -> None:
    """Recompute the rollup rows of `days` from the appointment view (a day with no appointments has none)."""
    optout = optout_condition(conn)
    for day in sorted(days, key=lambda d: d or ""):
        if day is None:
            conn.execute(f"DELETE FROM {NAME} WHERE day IS NULL")
            conn.execute(f"INSERT INTO {NAME} " + _select(" AND start_time IS NULL", optout))
            continue
        conn.execute(f"DELETE FROM {NAME} WHERE day = ?", (day,))
        # The range on start_time picks the day's rows through the view's start_time index.
        cond = " AND start_time >= ? AND start_time < ? AND substr(start_time, 1, 10) = ?"
        conn.execute(f"INSERT INTO {NAME} " + _select(cond, optout), (day, day + "\uffff", day) * len(DIMENSIONS))
