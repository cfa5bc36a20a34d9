"""Benchmark: the materialized practice views (analytics.views) — full rebuild speed and per-write maintenance.

Usage: python benchmarks/view_maintenance.py [--patients N] [--repeat R] [--sample S] [--json OUT]

1. A demo practice of N patients is written into a store WITHOUT views (the baseline data).
2. Full rebuild of every view (PracticeViews.rebuild, compiled engine path), R times: rows/s, with the
   time split into reading+parsing bodies, the engine's row functions, inserts, and indexes.
3. Maintenance: S resources of viewed types are re-written (updates) R times through `write`, and
   through `write_prepared` (bodies as text: the store parses them for views), into the store with
   views and into a copy without; (with - without) / S is the maintenance cost per written resource.
4. Initial load into an empty store via write_prepared: no views, views rebuilt at the end, views live.
Medians are reported.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import gc
import json
import random
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from fhirgate.analytics.views import materializer as mz
from fhirgate.analytics.views.maintenance import PracticeViews
from fhirgate.demo.generator import write_practice
from fhirgate.ingest.payload import prepare_resource
from fhirgate.store.sqlite.store import SqliteStore


def _median(samples: list[float]) -> float:
    return statistics.median(samples)


def rebuild_breakdown(store: SqliteStore, views: PracticeViews) -> dict[str, float]:
    """One rebuild of every view, timed by phase (same work as PracticeViews.rebuild, instrumented)."""
    conn = store._conn()
    by_type: dict[str, list[mz.MaterializedView]] = defaultdict(list)
    for name in views.names():
        v = views.view(name)
        by_type[v.spec.resource].append(v)
    t: dict[str, float] = defaultdict(float)
    rows_total = 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        for rtype, vs in by_type.items():
            for v in vs:
                mz.create_table(conn, v)
            t0 = time.perf_counter()
            data = conn.execute(
                "SELECT rid, body FROM resources WHERE type = ? AND deleted = 0 ORDER BY rid", (rtype,)
            ).fetchall()
            t1 = time.perf_counter()
            parsed = [(rid, orjson.loads(body)) for rid, body in data]
            t2 = time.perf_counter()
            t["read"] += t1 - t0
            t["parse"] += t2 - t1
            for v in vs:
                t2 = time.perf_counter()
                rows = [row for rid, r in parsed for row in v.rows(rid, r)]
                t3 = time.perf_counter()
                conn.executemany(v.insert_sql, rows)
                t4 = time.perf_counter()
                mz.create_indexes(conn, v)
                t5 = time.perf_counter()
                t["engine"] += t3 - t2
                t["insert"] += t4 - t3
                t["index"] += t5 - t4
                rows_total += len(rows)
    finally:
        conn.execute("ROLLBACK")
    t["rows"] = rows_total
    return dict(t)


def bench_rebuild(store: SqliteStore, views: PracticeViews, repeat: int) -> dict[str, Any]:
    """Median seconds and rows/s of a full rebuild of every view, plus a phase breakdown."""
    times: list[float] = []
    rows = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        counts = store.run_write(lambda conn: views.rebuild(conn))
        times.append(time.perf_counter() - t0)
        rows = sum(counts.values())
    gc.disable()  # as PracticeViews.rebuild does
    try:
        phases = rebuild_breakdown(store, views)
    finally:
        gc.enable()
    med = _median(times)
    return {
        "rows": rows,
        "seconds": round(med, 3),
        "rows_per_s": round(rows / med),
        "phase_us_per_row": {k: round(v / phases["rows"] * 1e6, 2) for k, v in phases.items() if k != "rows"},
    }


def bench_maintenance(with_views: SqliteStore, without: SqliteStore, sample: int, repeat: int) -> dict[str, Any]:
    """Per-resource cost of keeping the views current on updates, for write and write_prepared."""
    types = sorted(with_views.derived.watched(with_views._conn()))  # type: ignore[union-attr]
    pool = [r.body for t in types for r in with_views.iter_type(t)]
    random.Random(1).shuffle(pool)
    batch = [copy.deepcopy(r) for r in pool[:sample]]
    out: dict[str, Any] = {"resources": len(batch)}
    for path in ("write", "write_prepared"):
        timings: dict[str, list[float]] = {"with": [], "without": []}
        for _ in range(repeat):
            for label, store in (("with", with_views), ("without", without)):
                if path == "write":
                    t0 = time.perf_counter()
                    for i in range(0, len(batch), 100):
                        store.write(batch[i : i + 100])
                else:
                    items = [prepare_resource(copy.deepcopy(r), r["resourceType"], r["id"]) for r in batch]
                    t0 = time.perf_counter()
                    for i in range(0, len(items), 100):
                        store.write_prepared(items[i : i + 100])
                timings[label].append(time.perf_counter() - t0)
        w, wo = _median(timings["with"]), _median(timings["without"])
        out[path] = {
            "ms_per_resource_with_views": round(w / len(batch) * 1e3, 4),
            "ms_per_resource_without": round(wo / len(batch) * 1e3, 4),
            "maintenance_ms_per_resource": round((w - wo) / len(batch) * 1e3, 4),
        }
    # single-resource transactions (a FHIR update through the MCP tools)
    one: dict[str, list[float]] = {"with": [], "without": []}
    for _ in range(repeat):
        for label, store in (("with", with_views), ("without", without)):
            t0 = time.perf_counter()
            for r in batch[:200]:
                store.write([r])
            one[label].append((time.perf_counter() - t0) / min(200, len(batch)))
    out["single_write"] = {
        "ms_with_views": round(_median(one["with"]) * 1e3, 4),
        "ms_without": round(_median(one["without"]) * 1e3, 4),
        "maintenance_ms": round((_median(one["with"]) - _median(one["without"])) * 1e3, 4),
    }
    return out


def bench_initial_load(source: SqliteStore, workdir: Path, repeat: int) -> dict[str, Any]:
    """Seconds to load every resource into an empty store: no views, views rebuilt at the end, views live."""
    resources = [r.body for t in source.counts() for r in source.iter_type(t)]
    for r in resources:
        r.pop("meta", None)
    out: dict[str, Any] = {"resources": len(resources)}
    for mode in ("none", "end", "live"):
        times = []
        for k in range(repeat):
            items = [prepare_resource(r, r["resourceType"], r["id"]) for r in resources]
            path = workdir / f"load-{mode}-{k}.db"
            store = SqliteStore(path, derived=None if mode == "none" else PracticeViews())
            t0 = time.perf_counter()
            with store.initial_load(derived="live" if mode == "live" else "end"):
                for i in range(0, len(items), 2000):
                    store.write_prepared(items[i : i + 2000])
            times.append(time.perf_counter() - t0)
            store.close()
            path.unlink()
        out[mode] = round(_median(times), 3)
    return out


def main() -> None:
    """Run every measurement and print (and optionally save) the medians as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patients", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--sample", type=int, default=2000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = SqliteStore(work / "base.db")
        write_practice(base, patients=args.patients, seed=42, today=dt.date(2026, 7, 1))
        counts = base.counts()
        base._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        base.close()
        shutil.copy(work / "base.db", work / "views.db")
        t0 = time.perf_counter()
        views = PracticeViews()
        with_views = SqliteStore(work / "views.db", derived=views)  # builds every view at open
        first_build = time.perf_counter() - t0
        without = SqliteStore(work / "base.db")
        result: dict[str, Any] = {
            "patients": args.patients,
            "resources": sum(counts.values()),
            "first_build_on_open_s": round(first_build, 3),
            "rebuild": bench_rebuild(with_views, views, args.repeat),
            "maintenance": bench_maintenance(with_views, without, args.sample, args.repeat),
            "initial_load_s": bench_initial_load(without, work, max(1, args.repeat // 2)),
        }
        with_views.close()
        without.close()
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
