"""Benchmark: audit appends per second (WAL, synchronous=NORMAL; one record per transaction, anchor included).

Usage: python benchmarks/audit_append.py [--n 3000] [--runs 5] [--key SECRET] [--durable]
Prints each run and the median; each append is a full BEGIN IMMEDIATE .. COMMIT with the head anchor
written, exactly as a request would do it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from fhirgate.audit.log import AuditLog
from fhirgate.audit.record import AuditRecord


def sample_record(i: int) -> AuditRecord:
    """A typical search record: 20 references, one patient."""
    return AuditRecord.new(
        request_id=f"req-{i}",
        transport="http",
        method="tools/call",
        name="search",
        interaction="search",
        balp_kind="query",
        outcome="success",
        arguments={"resourceType": "Observation", "patient": "p1", "code": "8867-4"},
        resource_type="Observation",
        query_params=["patient", "code"],
        patients=["p1"],
        references=[f"Observation/o{i}-{j}" for j in range(20)],
        reason="scope.granted",
        latency_ms=3.2,
        client_address="127.0.0.1",
    )


def run(n: int, key: str | None, durable: bool) -> float:
    """Appends per second for n appends into a fresh log."""
    records = [sample_record(i) for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        log = AuditLog(Path(tmp) / "audit.db", key=key, chain_key=b"b" * 32, durable=durable)
        start = time.perf_counter()
        for rec in records:
            log.append(rec)
        elapsed = time.perf_counter() - start
        log.close()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--key", default=None, help="encrypt the audit database with this key")
    parser.add_argument("--durable", action="store_true", help="synchronous=FULL and fsync the anchor")
    args = parser.parse_args()
    rates = []
    for i in range(args.runs):
        rate = run(args.n, args.key, args.durable)
        rates.append(rate)
        print(f"run {i + 1}: {rate:,.0f} appends/s")
    print(f"median: {statistics.median(rates):,.0f} appends/s (n={args.n}, runs={args.runs})")


if __name__ == "__main__":
    main()
