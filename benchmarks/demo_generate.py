"""Benchmark: demo practice generation speed (resources per second) with no store, N=1000 by default."""

from __future__ import annotations

import argparse
import datetime as dt
import time
import tracemalloc
from collections import Counter

from fhirgate.demo.generator import generate_practice


def main() -> None:
    """Generate the demo practice and print resources/s, resources per patient and peak memory."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--memory", action="store_true", help="trace peak Python memory (slower)")
    args = parser.parse_args()
    if args.memory:
        tracemalloc.start()
    counts: Counter[str] = Counter()
    began = time.perf_counter()
    for batch in generate_practice(patients=args.patients, seed=args.seed, today=dt.date(2025, 6, 30)):
        for r in batch:
            counts[r["resourceType"]] += 1
    seconds = time.perf_counter() - began
    total = sum(counts.values())
    print(f"patients={args.patients} resources={total} seconds={seconds:.2f}")
    print(f"resources/s={total / seconds:,.0f} resources/patient={total / args.patients:.1f}")
    if args.memory:
        print(f"peak traced memory={tracemalloc.get_traced_memory()[1] / 1e6:.1f} MB")
    for rtype, n in counts.most_common():
        print(f"  {rtype:20s} {n:>9,}")


if __name__ == "__main__":
    main()
