"""Micro-benchmark: microseconds per resource for extract() over the Synthea sample.

Usage: python benchmarks/extract_speed.py [SYNTHEA_DIR] [--repeat N]
References are first rewritten from `urn:uuid:` to `Type/id`, as the loader does before indexing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from fhirgate.core.fhir.definitions import is_supported
from fhirgate.core.fhir.extract import extract

DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "synthea"


def _rewrite(node: Any, urls: dict[str, str]) -> None:
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str) and ref in urls:
            node["reference"] = urls[ref]
        for value in node.values():
            _rewrite(value, urls)
    elif isinstance(node, list):
        for value in node:
            _rewrite(value, urls)


def load(directory: Path) -> list[dict[str, Any]]:
    """Supported resources of every bundle in the directory, references made relative."""
    bundles = [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]
    urls = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}" for b in bundles for e in b["entry"]}
    out = []
    for bundle in bundles:
        for entry in bundle["entry"]:
            _rewrite(entry["resource"], urls)
            if is_supported(entry["resource"]["resourceType"]):
                out.append(entry["resource"])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not args.directory.is_dir():
        print(f"Synthea sample not found at {args.directory}", file=sys.stderr)
        return 2
    resources = load(args.directory)
    for r in resources:  # warm-up: compile every extractor
        extract(r)
    per_resource: dict[int, float] = defaultdict(lambda: float("inf"))
    clock = time.perf_counter_ns
    start = time.perf_counter()
    for _ in range(args.repeat):
        for i, r in enumerate(resources):
            t0 = clock()
            extract(r)
            per_resource[i] = min(per_resource[i], (clock() - t0) / 1000)
    wall = time.perf_counter() - start
    by_type: dict[str, list[float]] = defaultdict(list)
    rows = 0
    for i, r in enumerate(resources):
        by_type[r["resourceType"]].append(per_resource[i])
        x = extract(r)
        rows += sum(len(v) for v in (x.token, x.token_text, x.string, x.date, x.reference, x.quantity, x.uri))
    all_us = list(per_resource.values())
    print(f"{len(resources)} resources, {rows / len(resources):.1f} index rows each on average")
    print(f"{'type':<22}{'n':>6}{'median us':>11}{'max us':>10}")
    for rtype, values in sorted(by_type.items()):
        print(f"{rtype:<22}{len(values):>6}{statistics.median(values):>11.1f}{max(values):>10.1f}")
    print(f"median us/resource: {statistics.median(all_us):.1f}")
    print(f"mean us/resource:   {statistics.fmean(all_us):.1f}")
    print(f"throughput (1 core, incl. timing overhead): {len(resources) * args.repeat / wall:,.0f} resources/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
