"""Benchmark: run_report latency per report on generated demo practices (issue 4 targets: p50 <= 10 ms at
10,000 patients, <= 25 ms at 100,000).

Usage: python benchmarks/reports.py --data DIR|URL [--data ...] [--repeat R] [--today YYYY-MM-DD] [--json OUT]

Each DIR is a demo data directory (`fhirgate demo-data --data DIR --patients N --seed 7 --today 2026-11-21`);
a PostgreSQL URL (postgresql://…?schema=S, made the same way) is measured through its analytics replica, each
call including the replica's catch-up check against PostgreSQL (analytics/views/replica.py).
Every report runs through Gateway.run_report (SQL sandbox, policy, audit record to an in-memory sink), as a
practice-wide user (user/*.rs) and as a patient-confined token, with default params plus a 90-day period
variant; R timed runs after 2 warm-up runs. Reported: p50 and p95 in ms per report and principal.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from bench_policy import unlimited_policy

from fhirgate.analytics.reports.registry import reports
from fhirgate.app import views_replica
from fhirgate.audit.record import AuditRecord
from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.scopes import ScopeSet
from fhirgate.location import open_location
from fhirgate.service.context import RequestContext
from fhirgate.service.gateway import Gateway
from fhirgate.service.governance import Governance
from fhirgate.store.factory import open_store


class NullSink:
    """Audit sink that counts records (the audit log's own cost is benchmarked in audit_append.py)."""

    def __init__(self) -> None:
        self.count = 0

    def append(self, record: AuditRecord) -> int:
        self.count += 1
        return self.count


def principal(scope: str, patient: str | None = None) -> Principal:
    return Principal(sub="bench", issuer="urn:bench", scopes=ScopeSet.parse(scope), client_id="bench", patient=patient)


def time_report(gw: Gateway, who: Principal, name: str, params: dict[str, Any], repeat: int) -> dict[str, float]:
    for _ in range(2):
        gw.run_report(RequestContext(who), name, params)
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        gw.run_report(RequestContext(who), name, params)
        samples.append((time.perf_counter() - t0) * 1000.0)
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples), 2),
        "p95_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.95))], 2),
    }


def bench_dir(spec: str, repeat: int, today: str) -> dict[str, Any]:
    location = open_location(spec)
    store = open_store(location, create=False)
    replica = views_replica(location, store)  # a PostgreSQL location's views live in its analytics replica
    gw = Gateway(store, NullSink(), b"b" * 32, governance=Governance(unlimited_policy(), store), views_replica=replica)
    try:
        started = time.perf_counter()
        gw.analytics.sandbox.catalog()  # builds (or catches up) a PostgreSQL location's replica before timing
        ready_s = round(time.perf_counter() - started, 1)
        print(f"{location.name[-10:]:>10} analytics ready in {ready_s} s")
        counts = store.counts()
        user = principal("user/*.rs")
        first = gw.run_report(RequestContext(user), "patients_not_seen", {"today": today, "limit": 1})
        pid = first["rows"][0]["patient_id"] if first["rows"] else "pat-000000"
        pat = principal("launch/patient patient/*.rs", patient=pid)
        out: dict[str, Any] = {
            "patients": counts.get("Patient"),
            "appointments": counts.get("Appointment"),
            "analytics_ready_s": ready_s,
            "reports": {},
        }
        for name, spec in reports().items():
            variants = {"default": {"today": today}}
            if spec.takes_period:
                variants["last_90_days"] = {"today": today, "period": "last_90_days"}
            for label, params in variants.items():
                key = f"{name}[{label}]"
                out["reports"][key] = {
                    "user": time_report(gw, user, name, params, repeat),
                    "patient": time_report(gw, pat, name, params, repeat),
                }
                timing = out["reports"][key]
                print(f"{location.name[-10:]:>10} {key:<42} user {timing['user']}  patient {timing['patient']}")
        user_p50 = [v["user"]["p50_ms"] for v in out["reports"].values()]
        out["median_of_report_p50_ms"] = round(statistics.median(user_p50), 2)
        out["max_report_p50_ms"] = max(user_p50)
        return out
    finally:
        gw.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--data", action="append", required=True, help="demo data directory or PostgreSQL URL (repeatable)"
    )
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--today", default="2026-11-21")
    parser.add_argument("--json", help="write results here")
    args = parser.parse_args()
    results = {open_location(p).name: bench_dir(p, args.repeat, args.today) for p in args.data}
    for p, r in results.items():
        p50, worst = r["median_of_report_p50_ms"], r["max_report_p50_ms"]
        print(f"{p}: {r['patients']} patients, median report p50 {p50} ms, worst {worst} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
