"""billing_daily: per-day billed amounts and line counts of the claim_line and invoice_line views by service.

service_volume's revenue sums these rows instead of scanning every claim and invoice line of the period:
a day holds one row per (source, service_display), so a 90-day report reads a few thousand rows. Rows:
- `source` 'claim' from claim_line, `day` = substr(service_date, 1, 10) (Claim.billablePeriod.start);
- `source` 'invoice' from invoice_line, `day` = substr(date, 1, 10) (Invoice.date);
- `amount` = sum(amount) (NULL when every amount of the group is NULL), `lines` = count(*);
only lines whose status is billed: `status NOT IN NOT_BILLED_SQL` (reports.common; a NULL status is left
out, as the scanning SQL's `NOT IN` leaves it out). `day` compares with a period's dates exactly as the
full value does (a value is in [start, end) iff its first 10 characters are). A write recomputes the days
its lines were on and are now on, inside the write's transaction.

optout_excluded: lines of patients who opted out of AI access are left out, by the same definition and
query as analytics.views.rollup (derived.OPTOUTS_SQL over the consent view), so the set left out is the
rollup's whenever the consent view is kept; a write of a Consent recomputes the days of its patient's
lines. Lines with no patient are kept. analytics.sql.policy offers the table only when the caller's
excluded patients for Claim and Invoice equal `excluded_patients`.

labels_left_out: lines of Claims and Invoices carrying a label in summary.LEFT_OUT_LABELS are left out
(summary.unlabelled, the store's `_security` index). The index name carries the table's version (v1), so
a store without it (or with an older one) is rebuilt when it opens.
"""

# ruff: noqa: S608 - SQL built from constants and ? placeholders only.

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import apsw

from fhirgate.analytics.views.derived import is_current, left_out, optout_condition, recreate
from fhirgate.analytics.views.summary import SOURCE_TYPES, unlabelled

NAME = "billing_daily"
# view -> (source label, date column)
LINES = {"claim_line": ("claim", "service_date"), "invoice_line": ("invoice", "date")}
SOURCES = tuple(LINES)
COLUMNS = (
    ("day", "TEXT"),
    ("source", "TEXT"),
    ("service_display", "TEXT"),
    ("amount", "REAL"),
    ("lines", "INTEGER"),
)
# Claim.status / Invoice.status values that are not a bill (same as reports.common.NOT_BILLED_SQL).
_NOT_BILLED = "('draft', 'cancelled', 'entered-in-error')"
_DDL = f"CREATE TABLE {NAME}(day TEXT, source TEXT NOT NULL, service_display TEXT, amount REAL, lines INTEGER NOT NULL)"
# Covering index: a period report reads a day range's (service, amount, lines) and nothing else.
INDEX = f"{NAME}$day_service_v1"
_INDEXES = (f'CREATE INDEX IF NOT EXISTS "{INDEX}" ON {NAME}(day, service_display, amount, lines, source)',)


def _select(where: Mapping[str, str], optout: str, *, whole: bool = False) -> str:
    """The rows of the billed, unlabelled lines of both views matching `where[view]` and `optout`."""
    parts = []
    for view, (source, column) in LINES.items():
        cond = where[view] + f" AND status NOT IN {_NOT_BILLED}" + optout
        cond += unlabelled(view, SOURCE_TYPES[view], whole=whole)
        parts.append(
            f"SELECT substr({column}, 1, 10) AS d, '{source}', service_display AS s, sum(amount), count(*) "
            f"FROM {view} WHERE 1{cond} GROUP BY d, s"
        )
    return " UNION ALL ".join(parts)


def has_sources(tables: Iterable[str]) -> bool:
    """Whether both line views are maintained (else there is nothing to roll up)."""
    present = set(tables)
    return all(s in present for s in SOURCES)


def current(conn: apsw.Connection) -> bool:
    """Whether the table exists with the expected layout and version."""
    return is_current(conn, NAME, COLUMNS, INDEX)


def excluded_patients(conn: apsw.Connection) -> frozenset[str] | None:
    """The patients the table leaves out now (None when there is none; empty for an older version)."""
    return left_out(conn, NAME, current(conn))


def rebuild(conn: apsw.Connection) -> int:
    """Drop and recompute the whole table from the line views; returns its rows."""
    return recreate(conn, NAME, _DDL, _INDEXES, _select(dict.fromkeys(SOURCES, ""), optout_condition(conn), whole=True))


def days_of(conn: apsw.Connection, rids_by_view: Mapping[str, Sequence[int]]) -> set[str | None]:
    """The days (None: no date) of the current line rows of the given resources (`_rid`s by view)."""
    out: set[str | None] = set()
    for view, (_, column) in LINES.items():
        sql = f"SELECT DISTINCT substr({column}, 1, 10) FROM {view} WHERE _rid = ?"
        for rid in rids_by_view.get(view, ()):
            out.update(None if day is None else str(day) for (day,) in conn.execute(sql, (rid,)))
    return out


def days_of_patients(conn: apsw.Connection, patients: Iterable[str]) -> set[str | None]:
    """The days (None: no date) of the current lines of `patients` in either view."""
    out: set[str | None] = set()
    ids = sorted(set(patients))
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        for view, (_, column) in LINES.items():
            sql = f"SELECT DISTINCT substr({column}, 1, 10) FROM {view} WHERE patient_id IN ({marks})"
            out.update(None if day is None else str(day) for (day,) in conn.execute(sql, chunk))
    return out


def refresh(conn: apsw.Connection, days: Iterable[str | None]) -> None:
    """Recompute the rows of `days` from both line views (a day with no billed lines has none)."""
    optout = optout_condition(conn)
    for day in sorted(days, key=lambda d: d or ""):
        if day is None:
            conn.execute(f"DELETE FROM {NAME} WHERE day IS NULL")
            where = {view: f" AND {column} IS NULL" for view, (_, column) in LINES.items()}
            conn.execute(f"INSERT INTO {NAME} " + _select(where, optout))
            continue
        conn.execute(f"DELETE FROM {NAME} WHERE day = ?", (day,))
        # The range on the date column picks the day's lines through the view's covering (date, ...) index.
        where = {
            view: f" AND {column} >= ? AND {column} < ? AND substr({column}, 1, 10) = ?"
            for view, (_, column) in LINES.items()
        }
        conn.execute(f"INSERT INTO {NAME} " + _select(where, optout), (day, day + "\uffff", day) * len(LINES))
