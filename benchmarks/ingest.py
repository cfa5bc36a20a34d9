"""Ingest throughput: resources/s loading Synthea-shaped bundles with every search index written.

The Synthea sample (../shared/data/synthea) is copied N times with fresh uuids per copy (ids, fullUrls
and references rewritten consistently; the shared hospital/practitioner files are loaded once, so their
conditional references resolve), then loaded into a fresh SqliteStore in a temp dir, per validation mode.
Also measured in the same process: per-stage cost (µs per resource: parse, bundle preparation, fast
validation, extraction, serialization, SQLite write of prepared rows, index build), validation alone per
mode, and a baseline of raw apsw executemany of the same resources' JSON into one table (parse + dump +
insert, no validation, no indexes, cyclic GC off as in the loader). Medians over runs; results go to
benchmarks/results/ingest.json.

Modes: fast / full = load_paths with workers=0 (one process); fast-pool / full-pool = workers=2.

Usage: python benchmarks/ingest.py [--copies 4] [--runs 3] [--modes fast,fast-pool,full-pool]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import apsw
import orjson

from fhirgate.core.fhir.validate import supported_types, validate_resource
from fhirgate.ingest.loader import Loader, load_paths
from fhirgate.ingest.workers import model_verdicts
from fhirgate.store.sqlite.store import SqliteStore

ROOT = Path(__file__).resolve().parents[1]
SYNTHEA = ROOT.parent / "shared" / "data" / "synthea"
RESULTS = ROOT / "benchmarks" / "results" / "ingest.json"
UUID_RE = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SHARED_PREFIXES = ("hospitalInformation", "practitionerInformation")


def make_dataset(dest: Path, copies: int) -> int:
    """Write the sample `copies` times with per-copy uuids into dest; returns the stored-resource count."""
    shared = [p for p in sorted(SYNTHEA.glob("*.json")) if p.name.startswith(SHARED_PREFIXES)]
    patients = [p for p in sorted(SYNTHEA.glob("*.json")) if not p.name.startswith(SHARED_PREFIXES)]
    keep: set[bytes] = set()
    for p in shared:
        data = p.read_bytes()
        keep.update(UUID_RE.findall(data))
        (dest / p.name).write_bytes(data)
    for k in range(copies):
        prefix = f"{k:08x}".encode()

        def fresh(m: re.Match[bytes], prefix: bytes = prefix) -> bytes:
            u = m.group(0)
            return u if u in keep else prefix + u[8:]

        for p in patients:
            (dest / f"copy{k:03d}_{p.name}").write_bytes(UUID_RE.sub(fresh, p.read_bytes()))
    count = 0
    for p in dest.glob("*.json"):
        doc = orjson.loads(p.read_bytes())
        count += sum(1 for e in doc["entry"] if e["resource"]["resourceType"] in supported_types())
    return count


def _resources(dataset: Path) -> list[dict[str, Any]]:
    out = []
    for p in sorted(dataset.glob("*.json")):
        out += [e["resource"] for e in orjson.loads(p.read_bytes())["entry"]]
    return [r for r in out if r["resourceType"] in supported_types()]


def bench_validation(dataset: Path) -> dict[str, float]:
    """Resources/s of validate_resource alone, per mode (one process), and full mode's model part in a pool."""
    resources = _resources(dataset)
    out: dict[str, float] = {}
    for mode in ("fast", "full"):
        sample = resources if mode == "fast" else resources[:3000]
        validate_resource(sample[0], mode=mode, allow_conditional=True)  # warm model classes
        t = time.perf_counter()
        for r in sample:
            validate_resource(r, mode=mode, allow_conditional=True)
        out[mode] = len(sample) / (time.perf_counter() - t)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    files = [str(p) for p in sorted(dataset.glob("*.json"))]
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("forkserver")) as pool:
        list(pool.map(model_verdicts, files[:2]))  # start and warm the workers
        t = time.perf_counter()
        list(pool.map(model_verdicts, files))
        out["full_model_pool2"] = len(resources) / (time.perf_counter() - t)
    return out


def bench_load(dataset: Path, mode: str, runs: int) -> dict[str, Any]:
    """Median resources/s of load_paths into a fresh SqliteStore (every search index written)."""
    rates, summary = [], None
    validation = "full" if mode.startswith("full") else "fast"
    workers = 2 if mode.endswith("-pool") else 0
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            store = SqliteStore(Path(tmp) / "store.db")
            summary = load_paths(store, [dataset], validation=validation, workers=workers)  # type: ignore[arg-type]
            store.close()
        assert not summary.rejected, summary.rejected[:3]
        rates.append(summary.rate)
    assert summary is not None
    return {
        "median_rps": round(statistics.median(rates)),
        "runs_rps": [round(r) for r in rates],
        "resources": summary.resources,
    }


def bench_baseline(dataset: Path, runs: int) -> dict[str, Any]:
    """Raw apsw executemany of the same resources' JSON into one table: read+parse+dump+insert, one transaction."""
    rates, insert_rates = [], []
    files = sorted(dataset.glob("*.json"))
    supported = supported_types()
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            conn = apsw.Connection(str(Path(tmp) / "raw.db"))
            conn.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL")
            conn.execute("CREATE TABLE r(type TEXT, id TEXT, body TEXT, PRIMARY KEY(type, id))")
            gc.disable()
            try:
                t = time.perf_counter()
                rows = []
                for p in files:
                    for e in orjson.loads(p.read_bytes())["entry"]:
                        r = e["resource"]
                        if r["resourceType"] in supported:
                            rows.append((r["resourceType"], r.get("id") or e["fullUrl"][9:], orjson.dumps(r).decode()))
                t_ins = time.perf_counter()
                with conn:
                    conn.executemany("INSERT OR REPLACE INTO r VALUES (?, ?, ?)", rows)
                end = time.perf_counter()
            finally:
                gc.enable()
            conn.close()
        rates.append(len(rows) / (end - t))
        insert_rates.append(len(rows) / (end - t_ins))
    return {
        "median_rps": round(statistics.median(rates)),
        "insert_only_median_rps": round(statistics.median(insert_rates)),
    }


def bench_stages(dataset: Path) -> dict[str, float]:
    """Mean µs per stored resource of each ingest stage, one process, cyclic GC off (as in the loader)."""
    from collections import Counter

    from fhirgate.core.fhir.bundle import prepare_bundle
    from fhirgate.core.fhir.extract import extract
    from fhirgate.ingest.payload import decode, encode_rows, prepare_resource

    files = [p for p in sorted(dataset.glob("*.json")) if not p.name.startswith(SHARED_PREFIXES)]
    shared = [p for p in sorted(dataset.glob("*.json")) if p.name.startswith(SHARED_PREFIXES)]
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "s.db")
        gc.disable()
        try:
            with store.initial_load():
                load_paths(store, shared, validation="fast", workers=0, initial=False)
                datas = [p.read_bytes() for p in files]
                t = time.perf_counter()
                docs = [orjson.loads(d) for d in datas]
                out["parse"] = time.perf_counter() - t
                t = time.perf_counter()
                resolve = Loader(store, validation="fast").resolve
                preps = [prepare_bundle(d, resolve=resolve, accept=supported_types().__contains__) for d in docs]
                out["prepare_bundle (ids, urn:uuid + conditional refs)"] = time.perf_counter() - t
                entries = [e for p in preps for e in p.entries if e.resource is not None]
                n = len(entries)
                t = time.perf_counter()
                for e in entries:
                    validate_resource(e.resource, mode="fast", references=e.references)  # type: ignore[arg-type]
                out["validate fast"] = time.perf_counter() - t
                t = time.perf_counter()
                for e in entries:
                    extract(e.resource)  # type: ignore[arg-type]
                out["extract"] = time.perf_counter() - t
                t = time.perf_counter()
                items = [prepare_resource(e.resource, e.resource_type, e.id) for e in entries]  # type: ignore[arg-type]
                out["extract + serialize (prepare_resource)"] = time.perf_counter() - t
                base, pids = store.row_plan()
                t = time.perf_counter()
                payloads, k = [], 0
                for p in preps:
                    m = sum(1 for e in p.entries if e.resource is not None)
                    payloads.append(encode_rows(items[k : k + m], Counter(), base + k, pids))
                    k += m
                out["encode rows payload (worker)"] = time.perf_counter() - t
                t = time.perf_counter()
                decoded = [decode(b) for b in payloads]
                out["decode payload (writer)"] = time.perf_counter() - t
                t = time.perf_counter()
                for d in decoded:
                    store.write_rows(d.resources or [], d.tables)
                out["SQLite write_rows (one commit per bundle)"] = time.perf_counter() - t
                t = time.perf_counter()
            out["index build + ANALYZE + checkpoint"] = time.perf_counter() - t
        finally:
            gc.enable()
            store.close()
    return {k: round(v / n * 1e6, 2) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--modes", default="fast,fast-pool,full-pool")
    args = ap.parse_args()
    load_start = os.getloadavg()
    if not SYNTHEA.is_dir():
        sys.exit(f"Synthea sample not found at {SYNTHEA}")
    with tempfile.TemporaryDirectory() as tmp:
        dataset = Path(tmp)
        n = make_dataset(dataset, args.copies)
        size = sum(p.stat().st_size for p in dataset.glob("*")) / 1e6
        print(f"dataset: {args.copies} copies, {n} resources, {size:.1f} MB")
        stages = bench_stages(dataset)
        for k, v in stages.items():
            print(f"stage {k:<48} {v:>8.2f} µs/resource")
        validation = bench_validation(dataset)
        for k, v in validation.items():
            print(f"validation {k:<18} {v:>10,.0f} resources/s")
        baseline = bench_baseline(dataset, args.runs)
        print(
            f"baseline raw apsw executemany  {baseline['median_rps']:>10,} resources/s "
            f"(insert only {baseline['insert_only_median_rps']:,})"
        )
        loads: dict[str, Any] = {}
        for mode in args.modes.split(","):
            loads[mode] = bench_load(dataset, mode, args.runs)
            ratio = loads[mode]["median_rps"] / baseline["median_rps"]
            loads[mode]["ratio_to_baseline"] = round(ratio, 3)
            print(
                f"load {mode:<10} {loads[mode]['median_rps']:>10,} resources/s  runs={loads[mode]['runs_rps']}  "
                f"ratio to baseline {ratio:.2f}  (target 30,000)"
            )
    result = {
        "benchmark": "ingest",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "dataset": {"copies": args.copies, "resources": n, "source": "Synthea sample, uuids rewritten per copy"},
        "runs": args.runs,
        "stages_us_per_resource": stages,
        "validation_rps": {k: round(v) for k, v in validation.items()},
        "baseline": baseline,
        "load": loads,
        "target_rps": 30000,
        "load_average_at_start": load_start,
        "load_average_at_end": os.getloadavg(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
