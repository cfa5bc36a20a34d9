"""Benchmark: lookup_code latency (Terminology.lookup) for words, misspellings and codes; target p50 <= 5 ms.

Usage: python benchmarks/terminology.py [--runs 5] [--repeat 20] [--data DIR]
Builds the indexes once (reported as "warm-up"), then times each query `repeat` times per run and prints,
per query, the median over runs of the per-run p50, and the overall p50 and p95 by category. With --data
(a data directory with a store), the practice's seen-in-data codes are indexed too.
"""

from __future__ import annotations

import argparse
import statistics
import time

from fhirgate.terminology.lookup import Terminology

QUERIES: dict[str, list[dict[str, str]]] = {
    "words": [
        {"text": "HbA1c"},
        {"text": "a1c"},
        {"text": "diabetes"},
        {"text": "high blood pressure"},
        {"text": "type 2 diabetes with hyperglycemia"},
        {"text": "LDL"},
        {"text": "statins"},
        {"text": "asthma"},
        {"text": "flu shot"},
        {"text": "chronic kidney disease stage 3"},
        {"text": "fracture femur"},
        {"text": "pain"},
    ],
    "misspellings": [
        {"text": "diabtes"},
        {"text": "hypertenson"},
        {"text": "metfromin"},
        {"text": "astma"},
        {"text": "cholestrol"},
        {"text": "atorvastatine"},
    ],
    "unknown": [{"text": "xyzzy"}, {"text": "diabetes purplewidget"}],
    "codes": [
        {"code": "E11"},
        {"code": "E11.9"},
        {"code": "e119"},
        {"code": "4548-4"},
        {"code": "http://loinc.org|4548-4"},
        {"code": "S72"},
        {"code": "6809", "system": "rxnorm"},
    ],
}


def _time(term: Terminology, query: dict[str, str], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        term.lookup(**query)  # type: ignore[arg-type]
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--data", help="a data directory whose store's seen codes are indexed too")
    args = parser.parse_args()
    term = Terminology()
    store = None
    if args.data:
        from fhirgate.config import DataDir
        from fhirgate.store.factory import open_store

        store = open_store(DataDir(args.data), create=False)
        term = Terminology.for_store(store)
    began = time.perf_counter()
    term.warm()
    print(f"warm-up (index build): {(time.perf_counter() - began) * 1000:.0f} ms")
    runs: dict[str, list[float]] = {}
    for _ in range(args.runs):
        for category, queries in QUERIES.items():
            for q in queries:
                key = f"{category}: {q.get('text') or q.get('code')}"
                runs.setdefault(key, []).append(_time(term, q, args.repeat))
    per_query = {key: statistics.median(values) for key, values in runs.items()}
    width = max(len(k) for k in per_query)
    print(f"{'query':<{width}}  p50 ms (median of {args.runs} run medians, {args.repeat} calls each)")
    for key, value in per_query.items():
        print(f"{key:<{width}}  {value:7.3f}")
    print()
    print(f"{'category':<14} {'p50 ms':>8} {'p95 ms':>8}")
    for category in QUERIES:
        values = sorted(v for k, v in per_query.items() if k.startswith(category + ":"))
        p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
        print(f"{category:<14} {statistics.median(values):8.3f} {p95:8.3f}")
    overall = statistics.median(per_query.values())
    print(f"{'all':<14} {overall:8.3f}   target p50 <= 5 ms: {'met' if overall <= 5 else 'NOT met'}")
    if store is not None:
        store.close()


if __name__ == "__main__":
    main()
