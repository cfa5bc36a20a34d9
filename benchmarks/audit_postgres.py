"""Benchmark: latency of one PostgreSQL audit append (advisory lock, head read, insert, head update, commit).

Usage: python benchmarks/audit_postgres.py [--url postgresql://postgres@127.0.0.1:5432/test] [--n 2000]
           [--processes 2]
Prints p50/p95/p99 in milliseconds for one thread appending alone, then for --processes worker processes
appending to the same chain at once (each timing its own appends); the chain is verified at the end and
the throw-away schema dropped. Every append is what a request does before its response leaves.
"""

from __future__ import annotations

import argparse
import multiprocessing
import secrets
import statistics
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))
from audit_append import sample_record

from fhirgate.audit.pg_log import PgAuditLog
from fhirgate.audit.verify import verify

CHAIN_KEY = b"b" * 32


def timed_appends(url: str, schema: str, n: int, offset: int = 0) -> list[float]:
    """Append n records and return each append's latency in ms."""
    records = [sample_record(offset + i) for i in range(n)]
    out: list[float] = []
    with PgAuditLog(url, schema=schema, chain_key=CHAIN_KEY) as log:
        for rec in records:
            start = time.perf_counter()
            log.append(rec)
            out.append((time.perf_counter() - start) * 1000)
    return out


def summary(label: str, ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=100)
    return (
        f"{label}: n={len(ms)} p50={statistics.median(ms):.2f} ms p95={q[94]:.2f} ms p99={q[98]:.2f} ms "
        f"max={max(ms):.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    schema = f"fg_bench_audit_{secrets.token_hex(4)}"
    try:
        PgAuditLog(args.url, schema=schema, chain_key=CHAIN_KEY).close()
        timed_appends(args.url, schema, 200)  # warm-up: pool, plans, buffers
        print(summary("1 thread", timed_appends(args.url, schema, args.n)))
        ctx = multiprocessing.get_context("spawn")
        jobs = [(args.url, schema, args.n, (p + 1) * args.n) for p in range(args.processes)]
        with ctx.Pool(args.processes) as pool:
            results = pool.starmap(timed_appends, jobs)
        print(summary(f"{args.processes} processes concurrently", [ms for r in results for ms in r]))
        with PgAuditLog(args.url, schema=schema, chain_key=CHAIN_KEY) as log:
            report = verify(log)
            print(f"verify: ok={report.ok} records={report.checked}")
    finally:
        with psycopg.connect(args.url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


if __name__ == "__main__":
    main()
