"""Data verbs: `load` FHIR files, `export` NDJSON, and generate the `demo-data` practice."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from fhirgate.database import resolve_key
from fhirgate.errors import InvalidInput
from fhirgate.location import open_location

AddData = Callable[[argparse.ArgumentParser], None]


def register(sub: Any, add_data: AddData) -> None:
    """Add the load, export and demo-data sub-commands."""
    p = sub.add_parser("load", help="load FHIR bundles, resources, NDJSON files or folders of them")
    add_data(p)
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (Synthea output loads as it is)")
    p.add_argument(
        "--validation",
        choices=("full", "fast"),
        default="full",
        help="full: fhir.resources R4B models + required bindings (default); fast: structure + required bindings",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_load)

    p = sub.add_parser("export", help="write the store as FHIR Bulk Data NDJSON, one file per type")
    add_data(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--type", action="append", dest="types", metavar="TYPE", help="only this type (repeatable)")
    p.set_defaults(handler=cmd_export)

    p = sub.add_parser("demo-data", help="generate and load a deterministic synthetic practice")
    add_data(p)
    p.add_argument("--patients", type=int, default=200, metavar="N", help="number of patients (default 200)")
    p.add_argument("--seed", type=int, default=7, metavar="S", help="random seed (default 7)")
    p.add_argument(
        "--today",
        metavar="YYYY-MM-DD",
        help="anchor date for the generated history (default: today); same seed+today = same data",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_demo_data)


def _key(args: argparse.Namespace) -> str | None:
    return resolve_key(args.key_file)


def cmd_load(args: argparse.Namespace) -> int:
    """Load files into the store; rejected bundles are reported and the run goes on."""
    from fhirgate.ingest.loader import load_paths
    from fhirgate.store.factory import open_store

    paths = [Path(p) for p in args.paths]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise InvalidInput("PATH", f"not found: {', '.join(missing)}")
    store = open_store(open_location(args.data), key=_key(args))
    try:
        summary = load_paths(
            store, paths, validation=args.validation, progress=not args.no_progress and sys.stderr.isatty()
        )
    finally:
        store.close()
    print(summary.render())
    return 0 if not summary.rejected else 3


def cmd_export(args: argparse.Namespace) -> int:
    """Export every current resource as NDJSON."""
    from fhirgate.store.export import export_ndjson
    from fhirgate.store.factory import open_store

    store = open_store(open_location(args.data), key=_key(args), create=False)
    try:
        written = export_ndjson(store, Path(args.out), types=args.types)
    finally:
        store.close()
    total = sum(written.values())
    for resource_type, count in written.items():
        print(f"{resource_type}.ndjson\t{count}")
    print(f"exported {total} resources in {len(written)} files to {args.out}")
    return 0


def parse_day(value: str | None) -> date | None:
    """A YYYY-MM-DD option value, or None."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput("--today", "not a date", "YYYY-MM-DD") from None


def cmd_demo_data(args: argparse.Namespace) -> int:
    """Generate the demo practice into the data directory and trust the local dev issuer there."""
    from fhirgate.demo.generator import write_practice
    from fhirgate.store.factory import open_store

    if not 1 <= args.patients <= 1_000_000:
        raise InvalidInput("--patients", f"{args.patients} is out of range", "1..1000000")
    data_dir = open_location(args.data).ensure()
    store = open_store(data_dir, key=_key(args))
    try:
        summary = write_practice(
            store,
            patients=args.patients,
            seed=args.seed,
            today=parse_day(args.today),
            progress=not args.no_progress and sys.stderr.isatty(),
        )
    finally:
        store.close()
    # A demo is a development set-up: its data directory trusts the local dev issuer (see docs/deployment.md),
    # whose keys are created now so that `serve` works before the first `token`.
    data_dir.dev_issuer()
    data_dir.update_settings("auth", {"trust_dev_issuer": True})
    total = sum(summary.counts.values())
    print(f"demo practice: {args.patients} patients, {total} resources in {data_dir.name}")
    for resource_type, count in sorted(summary.counts.items()):
        print(f"  {resource_type:<22}{count:>9}")
    print("this location trusts the local development token issuer (fhirgate token)")
    return 0
