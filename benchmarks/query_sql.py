"""Benchmark: query_sql over a large appointment view (no-shows by practitioner for one month).

Usage: python benchmarks/query_sql.py [--patients 100000] [--per-patient 10] [--runs 30] [--key SECRET]

Builds store.db with plain SQL (no FHIR): `appointment` (patients x per-patient rows, i.e. 1M at 100k
patients, spread over 2024-2025) and `practitioner` (200), with the indexes the materializer gives the
built-in views (from analytics/views/registry.py). Then reports
medians of:
- raw:      the SELECT on a plain read-only connection against the tables (no sandbox at all);
- sandbox:  SqlSandbox.query for a practice-wide caller with warm views (what a repeated call costs);
- install:  the temp-view install when the caller's grants change (alternating two principals);
- patient:  the same query for a patient-confined caller;
and the sandbox overhead = sandbox - raw (catalog check, authorizer, one-statement check, page reading).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from fhirgate.analytics.sql.catalog import builtin_views
from fhirgate.analytics.sql.policy import grant_views
from fhirgate.analytics.sql.sandbox import SqlSandbox
from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.scopes import ScopeSet
from fhirgate.database import open_sqlite

QUERY = (
    "SELECT p.id, p.family, count(*) AS no_shows FROM appointment a JOIN practitioner p ON p.id = a.practitioner_id "
    "WHERE a.status = 'noshow' AND a.start_time >= '2025-03-01' AND a.start_time < '2025-04-01' "
    "GROUP BY p.id ORDER BY no_shows DESC"
)
# A patient-confined caller has no practitioner view (not in the patient compartment): group by id.
PATIENT_QUERY = (
    "SELECT practitioner_id, count(*) AS no_shows FROM appointment WHERE status = 'noshow' "
    "AND start_time >= '2025-03-01' AND start_time < '2025-04-01' GROUP BY practitioner_id"
)
RAW_QUERY = QUERY.replace("FROM appointment a JOIN practitioner p", "FROM main.appointment a JOIN main.practitioner p")

BUILD = """
CREATE TABLE resources(rid INTEGER PRIMARY KEY, type TEXT, id TEXT, body TEXT);
CREATE TABLE practitioner(id TEXT, active INTEGER, family TEXT, given TEXT, prefix TEXT, suffix TEXT, npi TEXT,
  gender TEXT, _rid INTEGER NOT NULL);
CREATE TABLE appointment(id TEXT, patient_id TEXT, practitioner_id TEXT, location_id TEXT, status TEXT,
  service_code TEXT, service_display TEXT, service_category TEXT, appointment_type TEXT, start_time TEXT,
  end_time TEXT, minutes INTEGER, created TEXT, cancel_reason TEXT, _rid INTEGER NOT NULL);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
INSERT INTO practitioner SELECT 'dr' || i, 1, 'Family' || i, 'Given' || i, 'Dr', NULL, 1000 + i, 'female', i FROM n;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < :rows - 1)
INSERT INTO appointment
SELECT 'appt' || i, 'pat' || (i % :patients), 'dr' || (1 + (i * 7919) % 200), NULL,
  CASE WHEN i % 11 = 0 THEN 'noshow' WHEN i % 13 = 0 THEN 'cancelled' ELSE 'fulfilled' END,
  '185349003', 'Consultation', NULL, NULL,
  strftime('%Y-%m-%dT%H:%M:00-05:00', '2024-01-01', '+' || ((i * 104729) % 1051200) || ' minutes'),
  NULL, 30, NULL, NULL, 1000 + i
FROM n;
"""


def index_ddl() -> str:
    """The indexes the materializer gives the built-in appointment and practitioner views (from the registry)."""
    from fhirgate.analytics.views.materializer import index_name
    from fhirgate.analytics.views.registry import BUILTIN_INDEXES

    statements = [
        'CREATE INDEX "appointment$_rid" ON appointment(_rid)',
        'CREATE INDEX "practitioner$_rid" ON practitioner(_rid)',
    ]
    for view in ("appointment", "practitioner"):
        for columns in BUILTIN_INDEXES.get(view, ()):
            statements.append(f'CREATE INDEX "{index_name(view, columns)}" ON {view}({", ".join(columns)})')
    return ";\n".join(statements) + ";\nANALYZE;"


def build(path: Path, patients: int, per_patient: int, key: str | None) -> float:
    """Create the benchmark store; returns seconds taken."""
    start = time.perf_counter()
    conn = open_sqlite(path, key=key)
    with conn:
        conn.execute(BUILD, {"rows": patients * per_patient, "patients": patients})
        conn.execute(index_ddl())
        for name, info in builtin_views().items():  # the other views exist too (empty): all 13 get installed
            if name not in ("appointment", "practitioner"):
                cols = ", ".join(f'"{c.name}" {c.sql_type}' for c in info.columns)
                conn.execute(f'CREATE TABLE "{name}"({cols}, _rid INTEGER NOT NULL)')
    conn.close()
    return time.perf_counter() - start


def principal(scope: str, patient: str | None = None, sub: str = "bench") -> Principal:
    return Principal(sub=sub, issuer="urn:bench", scopes=ScopeSet.parse(scope), patient=patient)


def median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--per-patient", type=int, default=10)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--key", default=None, help="encrypt the store with this key")
    parser.add_argument(
        "--extra-index",
        default=None,
        help="also index appointment on these columns, e.g. practitioner_id,start_time,status",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.db"
        took = build(path, args.patients, args.per_patient, args.key)
        if args.extra_index:
            conn = open_sqlite(path, key=args.key)
            conn.execute(f"CREATE INDEX bench_extra ON appointment({args.extra_index}); ANALYZE")
            conn.close()
        print(
            f"built {args.patients * args.per_patient:,} appointment rows ({args.patients:,} patients) in {took:.1f} s"
        )

        raw = open_sqlite(path, key=args.key, readonly=True)
        raw_rows = raw.execute(RAW_QUERY).fetchall()
        plan = raw.execute("EXPLAIN QUERY PLAN " + RAW_QUERY).fetchall()
        print("plan: " + "; ".join(str(r[-1]) for r in plan))
        raw_ms = median_ms(lambda: raw.execute(RAW_QUERY).fetchall(), args.runs)

        box = SqlSandbox(path, key=args.key, pool=1)
        catalog = box.catalog()
        user = grant_views(principal("user/*.rs"), catalog)
        other = grant_views(principal("launch/patient patient/*.rs", patient="pat7", sub="other"), catalog)
        page = box.query(user, QUERY, max_rows=200)
        assert page.rows == [list(r) for r in raw_rows], "sandbox and raw results differ"
        sandbox_ms = median_ms(lambda: box.query(user, QUERY, max_rows=200), args.runs)

        def alternate() -> None:
            box.query(other, "SELECT 1")
            box.query(user, "SELECT 1")

        install_ms = median_ms(alternate, args.runs) / 2
        trivial_ms = median_ms(lambda: box.query(user, "SELECT 1"), args.runs)
        mine = grant_views(principal("launch/patient patient/*.rs", patient="pat42"), catalog)
        patient_ms = median_ms(lambda: box.query(mine, PATIENT_QUERY, max_rows=200), args.runs)
        box.close()
        raw.close()
    print(f"rows returned: {len(page.rows)}")
    print(f"raw query (no sandbox):               median {raw_ms:7.2f} ms")
    print(
        f"query_sql sandbox, warm views:        median {sandbox_ms:7.2f} ms  (overhead {sandbox_ms - raw_ms:+.2f} ms)"
    )
    print(f"  of which a trivial SELECT 1 costs:  median {trivial_ms:7.2f} ms  (catalog check, authorizer, limits)")
    print(f"temp-view install on grant change:    median {install_ms - trivial_ms:7.2f} ms  (13 views x 2)")
    print(f"patient-confined caller (own rows):   median {patient_ms:7.2f} ms")
    target = 50.0
    print(f"target <= {target:.0f} ms at 100k patients: {'met' if sandbox_ms <= target else 'NOT met'}")


if __name__ == "__main__":
    main()
