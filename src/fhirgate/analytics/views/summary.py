"""patient_activity: a per-patient summary of the patient, appointment, claim_line and invoice_line views, kept current.

One row per patient with a Patient resource, an appointment, a claim line or an invoice line: the first fulfilled
appointment start, the latest one and its practitioner ('' when none; ties: the greatest practitioner id), the
latest start or created date over all appointments, the lifetime billed amount (claim and invoice lines not draft,
cancelled or entered-in-error: reports.common.NOT_BILLED_SQL), and the panel facts of the Patient resource: `active`
(1 when Patient.active is true and the patient is not deceased, the reports' active panel; 0 otherwise, including
when there is no (unlabelled) Patient resource). The practice reports read it to avoid scanning the views per
patient: with `active` in its indexes, "active patients not seen since" and "lapsed active patients" are index range
scans. It is recomputed for the patients a write touches (a Patient write touches its own row), after that
transaction's view rows are applied, and rebuilt with the views.

labels_left_out: resources carrying any security label in LEFT_OUT_LABELS (the default sensitive set,
core.policy.labels.SENSITIVE_DEFAULT: R V ETH PSY HIV STD SDV SEX BH GDIS 42CFRPart2) are left out of every derived
table (this summary, Patient resources included, and analytics.views.rollup), found by `_rid` in the store's
`_security` token index (ix_token/params, read on the store connection inside the write transaction, where a
resource's index rows are written before its view rows are applied). So a practice-wide caller from whom exactly
those labels are withheld can read the derived tables (analytics.sql.policy offers them only when the labels they
leave out equal the caller's withheld labels among those present). A patient whose every summarized resource is
labelled has no row. The `$lifetime_billed_v3` index name carries the summary's version (v2: labelled resources left
out; v3: the patient view summarized, panel facts and their indexes), so a store whose summary predates it is
rebuilt when it opens.
"""

# ruff: noqa: S608 - SQL built from constants and ? placeholders only.

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import apsw

from fhirgate.core.policy.labels import SENSITIVE_DEFAULT

NAME = "patient_activity"
SOURCES = ("patient", "appointment", "claim_line", "invoice_line")
COLUMNS = (
    ("patient_id", "TEXT"),
    ("first_fulfilled_start", "TEXT"),
    ("last_fulfilled_start", "TEXT"),
    ("last_fulfilled_practitioner", "TEXT"),
    ("last_activity", "TEXT"),
    ("lifetime_billed", "REAL"),
    ("active", "INTEGER"),
)
# Statuses of claim/invoice lines that are not billed (same as reports.common.NOT_BILLED_SQL).
_NOT_BILLED = "('draft', 'cancelled', 'entered-in-error')"
# Security label codes whose resources every derived table leaves out (see the module docstring).
LEFT_OUT_LABELS: frozenset[str] = SENSITIVE_DEFAULT
# The FHIR resource type each source view reads (the `_security` index is per type).
SOURCE_TYPES = {"patient": "Patient", "appointment": "Appointment", "claim_line": "Claim", "invoice_line": "Invoice"}
# The reports' active panel (reports.engagement.ACTIVE_PANEL) as a condition on a patient view row.
ACTIVE_SQL = "active = 1 AND coalesce(deceased, 0) = 0"
_LABEL_LIST = ", ".join(f"'{code}'" for code in sorted(LEFT_OUT_LABELS))

_DDL = (
    f"CREATE TABLE {NAME}(patient_id TEXT PRIMARY KEY, first_fulfilled_start TEXT, last_fulfilled_start TEXT, "
    "last_fulfilled_practitioner TEXT, last_activity TEXT, "
    "lifetime_billed REAL NOT NULL, active INTEGER NOT NULL) WITHOUT ROWID"
)
# The version marker (see the module docstring): current() looks for this index.
INDEX = f"{NAME}$lifetime_billed_v3"
# Each index ends with the primary key (patient_id), so a range of it is read in (key..., patient_id) order and
# counted or paged without touching the table: active patients by last / first fulfilled visit (patients_not_seen),
# by last activity with the billed amount (lapsed_high_value_patients).
_INDEXES = (
    f'CREATE INDEX IF NOT EXISTS "{NAME}$first_fulfilled_start" ON {NAME}(first_fulfilled_start)',
    f'CREATE INDEX IF NOT EXISTS "{NAME}$last_fulfilled_start" ON {NAME}(last_fulfilled_start)',
    f'CREATE INDEX IF NOT EXISTS "{INDEX}" ON {NAME}(lifetime_billed)',
    f'CREATE INDEX IF NOT EXISTS "{NAME}$active_last" ON {NAME}(active, last_fulfilled_start)',
    f'CREATE INDEX IF NOT EXISTS "{NAME}$active_first" ON {NAME}(active, first_fulfilled_start)',
    f'CREATE INDEX IF NOT EXISTS "{NAME}$active_lapsed" ON {NAME}(active, last_activity, lifetime_billed)',
)


def unlabelled(view: str, rtype: str, *, whole: bool = False) -> str:
    """An AND condition keeping the rows of `view` whose resource (`_rid`) has no label in LEFT_OUT_LABELS.

    Matched on the code alone, as analytics.sql.policy's row filter does. For a refresh (`whole` False),
    correlated on `_rid`: one probe of ix_token's primary key (rid, pid) per row, so recomputing a
    patient or a day costs the same however many resources are labelled. For a rebuild (`whole`), the
    labelled rowids of the type are read once (ix_token (pid, code) index) and each row is looked up in
    that set. `view` and `rtype` are module constants.
    """
    pid = f"(SELECT pid FROM main.params WHERE rtype = '{rtype}' AND code = '_security')"
    if whole:
        labelled = f"SELECT t.rid FROM main.ix_token t WHERE t.pid = {pid} AND t.code IN ({_LABEL_LIST})"
        return f' AND "{view}"._rid NOT IN ({labelled})'
    # `+t.code`: seek (rid, pid) once and test the resource's few labels, not one seek per listed code.
    return (
        f' AND NOT EXISTS (SELECT 1 FROM main.ix_token t WHERE t.rid = "{view}"._rid AND t.pid = {pid} '
        f"AND +t.code IN ({_LABEL_LIST}))"
    )


def _select(where_appt: str, where_line: str, where_patient: str, *, whole: bool = False) -> str:
    """The summary rows of the patients matching the conditions (applied to each source view), each source
    read once without its labelled resources (`whole`: for a rebuild, see `unlabelled`)."""
    where_patient += unlabelled("patient", SOURCE_TYPES["patient"], whole=whole)
    where_appt += unlabelled("appointment", SOURCE_TYPES["appointment"], whole=whole)
    where_claim = where_line + unlabelled("claim_line", SOURCE_TYPES["claim_line"], whole=whole)
    where_invoice = where_line + unlabelled("invoice_line", SOURCE_TYPES["invoice_line"], whole=whole)
    # Lines of any status make a patient's row; only billed ones count towards the amount.
    billed = f"sum(CASE WHEN status NOT IN {_NOT_BILLED} THEN amount END) AS s"
    return (
        "WITH a AS (SELECT patient_id, min(CASE WHEN status = 'fulfilled' THEN start_time END) AS ff, "
        "max(CASE WHEN status = 'fulfilled' THEN start_time || '|' || coalesce(practitioner_id, '') END) AS lf, "
        "max(start_time) AS ms, max(created) AS mc FROM appointment "
        f"WHERE patient_id IS NOT NULL{where_appt} GROUP BY patient_id), "
        f"c AS (SELECT patient_id, {billed} FROM claim_line WHERE patient_id IS NOT NULL{where_claim} "
        "GROUP BY patient_id), "
        f"i AS (SELECT patient_id, {billed} FROM invoice_line WHERE patient_id IS NOT NULL{where_invoice} "
        "GROUP BY patient_id), "
        f"p AS (SELECT id AS patient_id, CASE WHEN {ACTIVE_SQL} THEN 1 ELSE 0 END AS act FROM patient "
        f"WHERE 1{where_patient}), "
        "ids AS (SELECT patient_id FROM a UNION SELECT patient_id FROM c UNION SELECT patient_id FROM i "
        "UNION SELECT patient_id FROM p) "
        "SELECT ids.patient_id, a.ff, substr(a.lf, 1, instr(a.lf, '|') - 1), substr(a.lf, instr(a.lf, '|') + 1), "
        "CASE WHEN a.ms IS NULL THEN a.mc WHEN a.mc IS NULL THEN a.ms "
        "ELSE max(a.ms, a.mc) END, coalesce(c.s, 0) + coalesce(i.s, 0), coalesce(p.act, 0) FROM ids "
        "LEFT JOIN a ON a.patient_id = ids.patient_id LEFT JOIN c ON c.patient_id = ids.patient_id "
        "LEFT JOIN i ON i.patient_id = ids.patient_id LEFT JOIN p ON p.patient_id = ids.patient_id"
    )


def has_sources(tables: Iterable[str]) -> bool:
    """Whether every source view table exists (else there is nothing to summarize)."""
    present = set(tables)
    return all(s in present for s in SOURCES)


def current(conn: apsw.Connection) -> bool:
    """Whether the summary table exists with the expected layout and version (its versioned index)."""
    cols = [(str(r[1]), str(r[2]).upper()) for r in conn.execute(f"PRAGMA main.table_info({NAME})")]
    indexed = conn.execute("SELECT 1 FROM main.sqlite_schema WHERE type = 'index' AND name = ?", (INDEX,)).fetchone()
    return cols == list(COLUMNS) and indexed is not None


def rebuild(conn: apsw.Connection) -> int:
    """Drop and recompute the whole summary from the source views; returns its rows."""
    conn.execute(f"DROP TABLE IF EXISTS {NAME}")
    conn.execute(_DDL)
    conn.execute(f"INSERT INTO {NAME} " + _select("", "", "", whole=True))
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
        column = "id" if view == "patient" else "patient_id"  # the patient view's row is the patient
        sql = f'SELECT {column} FROM "{view}" WHERE _rid = ? AND {column} IS NOT NULL'
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
        conn.execute(f"INSERT INTO {NAME} " + _select(cond, cond, f" AND id IN ({marks})"), chunk * 4)
