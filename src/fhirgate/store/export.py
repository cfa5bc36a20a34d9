"""Bulk export: the store as FHIR Bulk Data NDJSON, one file per resource type."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import orjson

from fhirgate.store.contract import FhirStore


def export_ndjson(store: FhirStore, out_dir: Path, *, types: Sequence[str] | None = None) -> dict[str, int]:
    """Write `<Type>.ndjson` for each type with resources (FHIR Bulk Data Access, output format); counts per type."""
    out_dir.mkdir(parents=True, exist_ok=True)
    present = store.counts()
    wanted = [t for t in (types or sorted(present)) if present.get(t)]
    written: dict[str, int] = {}
    for resource_type in wanted:
        path = out_dir / f"{resource_type}.ndjson"
        tmp = path.with_suffix(".ndjson.partial")
        count = 0
        with tmp.open("wb") as fh:
            for stored in store.iter_type(resource_type):
                fh.write(orjson.dumps(stored.body))
                fh.write(b"\n")
                count += 1
        tmp.replace(path)
        written[resource_type] = count
    return written
