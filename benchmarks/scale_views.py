"""Build a practice N times the size of a generated one, at the level the reports read: its view rows replicated.

Usage: python benchmarks/scale_views.py --source DIR --factor 10 --out DIR

Generating a 100,000-patient demo practice takes hours on this machine (the store, its search indexes and the
views are written resource by resource). Reports read only the materialized views, the derived tables and the
`_security` label index, so this script builds a store holding exactly those for FACTOR copies of the source
practice: copy k renames every patient-owned id (`id`, `patient_id`, `encounter_id`) with a `-k` suffix (copy 0
keeps the originals) and keeps practitioners, locations and payers shared — a practice with FACTOR times the
patients, appointments, claims and observations over the same 30 practitioners and the same calendar. The
Consent resources are replicated the same way and written through the store, so opt-outs and the consent view
are real; the labelled-resource index is copied (replicas share `_rid`, so a replica of a labelled resource is
labelled too). The derived tables (patient_activity, appointment_daily) are then rebuilt from the replicated
views. Store resources other than Consents are not copied: record tools have nothing to read here.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from typing import Any

from fhirgate.analytics.views import rollup, summary
from fhirgate.config import DataDir
from fhirgate.store.factory import open_store

SUFFIXED = ("id", "patient_id", "encounter_id")


def _columns(conn: Any, schema: str, table: str) -> list[str]:
    return [str(r[1]) for r in conn.execute(f'PRAGMA {schema}.table_info("{table}")')]


def _select(columns: list[str], k: int) -> str:
    if k == 0:
        return ", ".join(f'"{c}"' for c in columns)
    return ", ".join(
        f'CASE WHEN "{c}" IS NULL THEN NULL ELSE "{c}" || \'-{k}\' END' if c in SUFFIXED else f'"{c}"' for c in columns
    )


def _consents(source: Path, factor: int) -> list[dict[str, Any]]:
    store = open_store(DataDir(source), create=False)
    try:
        originals = [s.body for s in store.iter_type("Consent")]
    finally:
        store.close()
    out = []
    for k in range(factor):
        for body in originals:
            clone = copy.deepcopy(body)
            clone.pop("meta", None)
            if k:
                clone["id"] = f"{body['id']}-{k}"
                clone["patient"] = {"reference": f"{body['patient']['reference']}-{k}"}
            out.append(clone)
    return out


def _replicate(conn: Any, factor: int) -> None:
    """Inside the write transaction, with the source attached as `src`: views, label index, derived tables."""
    views = [str(r[0]) for r in conn.execute("SELECT name FROM main.views_meta") if r[0] != "consent"]
    for view in views:
        cols = _columns(conn, "main", view)
        names = ", ".join(f'"{c}"' for c in cols)
        conn.execute(f'DELETE FROM main."{view}"')
        for k in range(factor):
            conn.execute(f'INSERT INTO main."{view}"({names}) SELECT {_select(cols, k)} FROM src."{view}"')
    security = conn.execute("SELECT pid, rtype, code FROM src.params WHERE code = '_security'").fetchall()
    for pid, rtype, code in security:
        conn.execute("INSERT OR IGNORE INTO main.params(rtype, code) VALUES (?, ?)", (rtype, code))
        (new,) = conn.execute("SELECT pid FROM main.params WHERE rtype = ? AND code = ?", (rtype, code)).fetchone()
        conn.execute(
            "INSERT OR IGNORE INTO main.ix_token(rid, pid, system, code) "
            "SELECT rid, ?, system, code FROM src.ix_token WHERE pid = ?",
            (new, pid),
        )
    summary.rebuild(conn)
    rollup.rebuild(conn)


def build(source: Path, factor: int, out: Path) -> dict[str, int]:
    """Write the scaled practice into `out`; returns row counts of the main views and the seconds taken."""
    began = time.perf_counter()
    data = DataDir(out).ensure()
    store = open_store(data)  # an empty store with empty view tables and views_meta
    try:
        consents = _consents(source, factor)
        for start in range(0, len(consents), 500):
            store.write(consents[start : start + 500])
        conn = store._conn()
        conn.execute("ATTACH DATABASE ? AS src", (str(Path(source) / "store.db"),))  # outside the transaction
        store.run_write(lambda c: _replicate(c, factor))
        conn.execute("DETACH DATABASE src")
        conn.execute("ANALYZE")
        views = ("patient", "appointment", "observation", "claim_line")
        counts = {v: int(conn.execute(f'SELECT count(*) FROM "{v}"').fetchone()[0]) for v in views}
    finally:
        store.close()
    counts["seconds"] = round(time.perf_counter() - began)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, help="a generated demo data directory")
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--out", required=True, help="a new data directory")
    args = parser.parse_args()
    print(build(Path(args.source), args.factor, Path(args.out)))


if __name__ == "__main__":
    main()
