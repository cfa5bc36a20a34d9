"""PostgreSQL ingest throughput: resources/s loading Synthea-shaped bundles through PostgresStore.write_prepared.

The dataset is benchmarks/ingest.py's: the Synthea sample (../shared/data/synthea) copied N times with fresh
uuids per copy, the shared hospital/practitioner files once. Each run loads it into a fresh PostgreSQL schema
(created by PostgresStore before the clock starts) the way load_paths loads an empty store with workers: inside
PostgresStore.initial_load (unless --plain: every index in place throughout), the shared files inline in this
process (Loader), then every patient file prepared in 2 worker processes by ingest.workers.process_file (parse,
ids, urn:uuid and conditional references resolved against the store, fast validation, extraction,
serialization, pickled payload) and written here by the Loader's prepared path (decode + write_prepared, one
transaction per file); then initial_load's exit (every index rebuilt, ANALYZE) and refresh_statistics, as
load_paths calls it. The clock includes starting the workers and everything after the last write, as
load_paths' does, so the final store is fully indexed and analyzed. The schema is dropped after each run.
The pool is ingest.workers.FilePool (whose workers open their own PostgresStore), counting declined files.

Also measured (one process, prepared items in memory, every index in place): µs per resource of preparation,
write_prepared, and write_prepared without index rows, with the client's CPU share of the write.

Usage: python benchmarks/ingest_postgres.py [--copies 4] [--runs 3] [--url postgresql://...]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import re
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg import sql

from fhirgate.core.fhir.bundle import prepare_bundle
from fhirgate.core.fhir.validate import supported_types, validate_resource
from fhirgate.ingest.loader import Loader
from fhirgate.ingest.payload import prepare_resource
from fhirgate.ingest.workers import FilePool, FileResult
from fhirgate.store.contract import PreparedResource
from fhirgate.store.factory import store_address
from fhirgate.store.postgres import PostgresStore
from fhirgate.store.postgres import writer as pg_writer

ROOT = Path(__file__).resolve().parents[1]
SYNTHEA = ROOT.parent / "shared" / "data" / "synthea"
UUID_RE = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SHARED_PREFIXES = ("hospitalInformation", "practitionerInformation")
DEFAULT_URL = os.environ.get("FHIRGATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
TARGET = 20_000
WORKERS = 2


def make_dataset(dest: Path, copies: int) -> int:
    """As benchmarks/ingest.py: the sample `copies` times with per-copy uuids; returns the supported-resource count."""
    files = sorted(SYNTHEA.glob("*.json"))
    shared = [p for p in files if p.name.startswith(SHARED_PREFIXES)]
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

        for p in files:
            if p not in shared:
                (dest / f"copy{k:03d}_{p.name}").write_bytes(UUID_RE.sub(fresh, p.read_bytes()))
    supported = supported_types()
    return sum(
        sum(1 for e in orjson.loads(p.read_bytes())["entry"] if e["resource"]["resourceType"] in supported)
        for p in dest.glob("*.json")
    )


class PgFilePool(FilePool):
    """ingest.workers.FilePool whose workers resolve conditional references against the PostgresStore, counting
    the files they declined (the loader loads those inline)."""

    def __init__(self, n: int, store: PostgresStore) -> None:
        super().__init__(n, "fast", prepare=True, store=store_address(store))
        self.declined = 0

    def result(self, path: Path) -> FileResult | None:
        """As FilePool.result, counting files the workers did not prepare (the loader loads those inline)."""
        found = super().result(path)
        if found is None or found.payload is None:
            self.declined += 1
        return found


@contextmanager
def fresh_store(url: str) -> Iterator[PostgresStore]:
    """A PostgresStore in a new schema (tables and indexes created), dropped afterwards."""
    schema = f"fg_bench_{secrets.token_hex(5)}"
    store = PostgresStore(url, schema=schema, pool_size=2)
    try:
        yield store
    finally:
        store.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


class _Timed:
    """Wraps store.write_prepared to count its wall time (the single writer's share of the load)."""

    def __init__(self, store: PostgresStore) -> None:
        self.seconds = 0.0
        self.calls = 0
        inner = store.write_prepared

        def timed(items: Any) -> int:
            t = time.perf_counter()
            try:
                return inner(items)
            finally:
                self.seconds += time.perf_counter() - t
                self.calls += 1

        store.write_prepared = timed  # type: ignore[method-assign]


def load_once(url: str, dataset: Path, *, initial: bool) -> dict[str, Any]:
    """One timed load into a fresh schema; returns resources, seconds, writer seconds, the seconds after the last
    write (index builds, ANALYZE) and inline fallbacks. `initial`: inside PostgresStore.initial_load."""
    files = sorted(dataset.glob("*.json"), key=lambda p: (not p.name.startswith(SHARED_PREFIXES), p.name))
    first = sum(1 for p in files if p.name.startswith(SHARED_PREFIXES))
    with fresh_store(url) as store:
        timed = _Timed(store)
        gc.disable()  # as load_paths does
        try:
            started = time.perf_counter()
            with contextlib.ExitStack() as stack:
                if initial:  # load_paths enters it when the store is empty
                    stack.enter_context(store.initial_load())
                pool = PgFilePool(WORKERS, store)
                stack.callback(pool.close)  # before initial_load's exit, as in load_paths
                loader = Loader(store, validation="fast", pool=pool)
                for i, path in enumerate(files):  # load_paths' loop
                    if i == first:
                        loader.flush()
                        pool.submit(files[first:])
                    loader.load_file(path)
                loader.flush()
                loaded = time.perf_counter()
            store.refresh_statistics()  # load_paths does, inside its clock (initial_load's exit too, as there)
            elapsed = time.perf_counter() - started
        finally:
            gc.enable()
        summary = loader.summary
        assert not summary.rejected, summary.rejected[:3]
        return {
            "resources": summary.resources,
            "seconds": elapsed,
            "write_seconds": timed.seconds,
            "end_seconds": started + elapsed - loaded,
            "declined_files": pool.declined - first,
        }


def bench_stages(url: str, dataset: Path) -> dict[str, float]:
    """µs per resource, one process: prepare (bundle + validate + extract + serialize), write_prepared with and
    without index rows, and the client CPU share of write_prepared (the rest is waiting on the server).
    """
    files = [p for p in sorted(dataset.glob("*.json")) if not p.name.startswith(SHARED_PREFIXES)]
    shared = [p for p in sorted(dataset.glob("*.json")) if p.name.startswith(SHARED_PREFIXES)]
    out: dict[str, float] = {}
    n = 0
    original = pg_writer._write_index
    gc.disable()
    try:
        for with_index in (True, False):
            with fresh_store(url) as store:
                loader = Loader(store, validation="fast")
                for p in shared:
                    loader.load_file(p)
                loader.flush()
                t = time.perf_counter()
                batches: list[list[PreparedResource]] = []
                for p in files:
                    prepared = prepare_bundle(
                        orjson.loads(p.read_bytes()), resolve=loader.resolve, accept=supported_types().__contains__
                    )
                    items = []
                    for e in prepared.entries:
                        assert e.resource is not None
                        validate_resource(e.resource, mode="fast", references=e.references)
                        items.append(prepare_resource(e.resource, e.resource_type, e.id))
                    batches.append(items)
                n = sum(len(b) for b in batches)
                if not with_index:  # shared files (conditional reference targets) stay indexed
                    pg_writer._write_index = lambda *a, **k: None
                if with_index:
                    out["prepare (parse, bundle, validate fast, extract, serialize)"] = time.perf_counter() - t
                t, cpu = time.perf_counter(), time.process_time()
                for items in batches:
                    store.write_prepared(items)
                wall, cpu = time.perf_counter() - t, time.process_time() - cpu
                if with_index:
                    out["write_prepared (COPY bodies + index rows, commit per file)"] = wall
                    out["  of which client CPU (body text, row tuples, COPY encoding)"] = cpu
                else:
                    out["write_prepared without index rows"] = wall
                    out["  of which client CPU (no index rows)"] = cpu
    finally:
        pg_writer._write_index = original
        gc.enable()
    return {k: round(v / n * 1e6, 2) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--url", default=DEFAULT_URL)
    ap.add_argument("--no-stages", action="store_true", help="skip the per-stage profile")
    ap.add_argument("--plain", action="store_true", help="load with every index in place (no initial_load)")
    args = ap.parse_args()
    if not SYNTHEA.is_dir():
        sys.exit(f"Synthea sample not found at {SYNTHEA}")
    with tempfile.TemporaryDirectory() as tmp:
        dataset = Path(tmp)
        n = make_dataset(dataset, args.copies)
        size = sum(p.stat().st_size for p in dataset.glob("*")) / 1e6
        print(f"dataset: {args.copies} copies, {n} resources, {size:.1f} MB; {os.cpu_count()} cpus, {WORKERS} workers")
        if not args.no_stages:
            for k, v in bench_stages(args.url, dataset).items():
                print(f"stage {k:<64} {v:>8.2f} µs/resource")
        rates = []
        resources = 0
        for run in range(args.runs):
            r = load_once(args.url, dataset, initial=not args.plain)
            resources = r["resources"]
            rate = r["resources"] / r["seconds"]
            rates.append(rate)
            print(
                f"run {run + 1}: {r['resources']} resources in {r['seconds']:.2f} s = {rate:,.0f} res/s"
                f" (write_prepared {r['write_seconds']:.2f} s, indexes + ANALYZE after the last write"
                f" {r['end_seconds']:.2f} s, files loaded inline {r['declined_files']})"
            )
    if not rates:
        return
    mode = "every index in place" if args.plain else "initial_load"
    print(
        f"postgres ingest ({mode}): {resources} resources, median {statistics.median(rates):,.0f} res/s"
        f" (target {TARGET:,}); runs {[round(x) for x in rates]}"
    )


if __name__ == "__main__":
    main()
