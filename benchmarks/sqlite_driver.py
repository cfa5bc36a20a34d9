"""Driver decision by measurement: stdlib sqlite3 (TEXT JSON) vs apsw-sqlite3mc (TEXT and JSONB bodies).

For each variant: insert every Synthea resource plus generic index rows (one executemany per table in a
single transaction), then a json_extract full-scan query, and reading every body back with orjson.
Also times the real SqliteStore write path with pre-extracted IndexRows (core.fhir.extract when present).
Prints medians over repeats. Usage: python benchmarks/sqlite_driver.py [synthea_dir] [--repeats N]
"""

from __future__ import annotations

import argparse
import gc
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import apsw
import orjson

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "synthea"
SCHEMA = [
    "CREATE TABLE resources(rid INTEGER PRIMARY KEY, type TEXT, id TEXT, body {body})",
    "CREATE UNIQUE INDEX resources_tid ON resources(type, id)",
    "CREATE TABLE ix_token(rid INTEGER, pid INTEGER, system TEXT, code TEXT,"
    " PRIMARY KEY(rid, pid, code, system)) WITHOUT ROWID",
    "CREATE INDEX ix_token_v ON ix_token(pid, code, system)",
    "CREATE TABLE ix_reference(rid INTEGER, pid INTEGER, ttype TEXT, tid TEXT, raw TEXT,"
    " PRIMARY KEY(rid, pid, raw, ttype, tid)) WITHOUT ROWID",
    "CREATE INDEX ix_reference_v ON ix_reference(pid, tid, ttype)",
]
QUERY = (
    "SELECT count(*) FROM resources WHERE type = 'Observation'"
    " AND json_extract(body, '$.status') = 'final' AND json_extract(body, '$.code.coding[0].code') IS NOT NULL"
)


def load_resources(folder: Path) -> list[dict[str, Any]]:
    """Every resource of every bundle in the folder."""
    out: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.json")):
        out += [e["resource"] for e in orjson.loads(path.read_bytes()).get("entry", [])]
    return out


def _walk(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, key)
        yield path, node
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item, path)


def generic_rows(resource: dict[str, Any]) -> tuple[list[tuple[int, str, str]], list[tuple[int, str, str, str]]]:
    """Token rows for every Coding and reference rows for every Reference (driver comparison only)."""
    tokens: list[tuple[int, str, str]] = []
    refs: list[tuple[int, str, str, str]] = []
    for path, node in _walk(resource, ""):
        pid = hash(path) % 64
        if "code" in node and isinstance(node.get("code"), str):
            tokens.append((pid, node.get("system") or "", node["code"]))
        ref = node.get("reference")
        if isinstance(ref, str):
            ttype, _, tid = ref.partition("/")
            refs.append((pid, ttype, tid, ref))
    return tokens, refs


def _median(fn: Callable[[], float], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        gc.collect()
        times.append(fn())
    return statistics.median(times)


def bench_driver(name: str, resources: list[dict[str, Any]], rows: list[Any], repeats: int) -> dict[str, float]:
    """Insert + full-scan + read-back times for one driver/body variant."""
    jsonb = name.endswith("JSONB")
    body_sql = "jsonb(?)" if jsonb else "?"
    texts = [orjson.dumps(r).decode() for r in resources]
    res_rows = [(i + 1, r["resourceType"], r["id"], t) for i, (r, t) in enumerate(zip(resources, texts, strict=True))]
    tok_rows = [(i + 1, *t) for i, (tok, _) in enumerate(rows) for t in tok]
    ref_rows = [(i + 1, *t) for i, (_, ref) in enumerate(rows) for t in ref]
    tmp = Path(tempfile.mkdtemp())
    counter = [0]

    def connect() -> Any:
        counter[0] += 1
        path = tmp / f"b{counter[0]}.db"
        conn = sqlite3.connect(path, isolation_level=None) if name.startswith("sqlite3") else apsw.Connection(str(path))
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "cache_size=-65536"):
            conn.execute(f"PRAGMA {pragma}")
        for stmt in SCHEMA:
            conn.execute(stmt.format(body="BLOB" if jsonb else "TEXT"))
        return conn

    last: list[Any] = []

    def insert() -> float:
        conn = connect()
        start = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany(f"INSERT INTO resources VALUES (?, ?, ?, {body_sql})", res_rows)
        conn.executemany("INSERT OR IGNORE INTO ix_token VALUES (?, ?, ?, ?)", tok_rows)
        conn.executemany("INSERT OR IGNORE INTO ix_reference VALUES (?, ?, ?, ?, ?)", ref_rows)
        conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        last[:] = [conn]
        return elapsed

    t_insert = _median(insert, repeats)
    conn = last[0]
    t_scan = _median(lambda: _timed(lambda: conn.execute(QUERY).fetchall()), repeats)
    read_sql = "SELECT json(body) FROM resources" if jsonb else "SELECT body FROM resources"
    t_read = _median(lambda: _timed(lambda: [orjson.loads(b) for (b,) in conn.execute(read_sql)]), repeats)
    return {
        "insert_s": t_insert,
        "res_per_s": len(res_rows) / t_insert,
        "rows_per_s": (len(res_rows) + len(tok_rows) + len(ref_rows)) / t_insert,
        "scan_ms": t_scan * 1000,
        "read_ms": t_read * 1000,
    }


def _timed(fn: Callable[[], object]) -> float:
    # GC off while timing: a big batch of fresh dicts otherwise triggers collections that dwarf parsing.
    gc.disable()
    try:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    finally:
        gc.enable()


def bench_store(resources: list[dict[str, Any]], repeats: int) -> dict[str, float] | None:
    """SqliteStore.write throughput with pre-extracted IndexRows, in batches of 1,000."""
    try:
        from fhirgate.core.fhir.extract import extract
    except ImportError:
        return None
    from fhirgate.core.fhir.definitions import is_supported
    from fhirgate.store.sqlite import SqliteStore

    resources = [r for r in resources if is_supported(r["resourceType"])]
    start = time.perf_counter()
    index = [extract(r) for r in resources]
    t_extract = time.perf_counter() - start
    n_rows = sum(
        len(ix.token) + len(ix.token_text) + len(ix.string) + len(ix.date) + len(ix.reference)
        + len(ix.quantity) + len(ix.number) + len(ix.uri) + len(ix.patients)
        for ix in index
    )  # fmt: skip

    def run() -> float:
        store = SqliteStore(Path(tempfile.mkdtemp()) / "store.db")
        begin = time.perf_counter()
        for i in range(0, len(resources), 1000):
            store.write(resources[i : i + 1000], index=index[i : i + 1000])
        elapsed = time.perf_counter() - begin
        store.close()
        return elapsed

    t_write = _median(run, repeats)
    return {
        "extract_res_per_s": len(resources) / t_extract,
        "write_res_per_s": len(resources) / t_write,
        "index_rows_per_s": n_rows / t_write,
        "rows_per_resource": n_rows / len(resources),
    }


def main() -> None:
    """Run every variant and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    resources = load_resources(args.folder)
    rows = [generic_rows(r) for r in resources]
    print(f"{len(resources)} resources; sqlite3 {sqlite3.sqlite_version}, apsw {apsw.sqlite_lib_version()}")
    print(f"{'variant':<22}{'insert s':>10}{'res/s':>10}{'rows/s':>10}{'scan ms':>10}{'read ms':>10}")
    for name in ("sqlite3 3.40 TEXT", "apsw 3.54 TEXT", "apsw 3.54 JSONB"):
        r = bench_driver(name, resources, rows, args.repeats)
        print(
            f"{name:<22}{r['insert_s']:>10.3f}{r['res_per_s']:>10.0f}{r['rows_per_s']:>10.0f}"
            f"{r['scan_ms']:>10.1f}{r['read_ms']:>10.1f}"
        )
    store = bench_store(resources, args.repeats)
    if store is None:
        print("SqliteStore write: skipped (fhirgate.core.fhir.extract not available)")
    else:
        print(
            f"SqliteStore.write (pre-extracted): {store['write_res_per_s']:.0f} resources/s, "
            f"{store['index_rows_per_s']:.0f} index rows/s ({store['rows_per_resource']:.1f} rows/resource); "
            f"extract alone {store['extract_res_per_s']:.0f} resources/s"
        )


if __name__ == "__main__":
    main()
