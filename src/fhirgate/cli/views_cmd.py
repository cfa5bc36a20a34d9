"""`fhirgate views`: run SQL on FHIR v2 ViewDefinitions and the official test suite (this module), and add, list
and rebuild the materialized practice views (cli/views_admin.py)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from fhirgate.errors import InvalidInput

AddData = Callable[[argparse.ArgumentParser], None]
Handler = Callable[[argparse.Namespace], int]
VerbSetup = Callable[[argparse.ArgumentParser, AddData], Handler]

FORMATS = ("json", "ndjson", "csv")


def register(sub: Any, add_data: AddData) -> None:
    """Add the `views` command: run and test here; add, list and rebuild from views_admin (materialized views)."""
    from fhirgate.cli import views_admin

    parser = sub.add_parser(
        "views", help="SQL on FHIR v2 views: run and test ViewDefinitions; add, list and rebuild practice views"
    )
    verbs = parser.add_subparsers(dest="views_verb", metavar="VERB")
    verbs.required = True
    for name, help_text, setup in (
        ("run", "rows of a ViewDefinition over NDJSON resources or the store", _setup_run),
        ("test", "run SQL on FHIR test files and write the official report", _setup_test),
    ):
        verb = verbs.add_parser(name, help=help_text)
        verb.set_defaults(handler=setup(verb, add_data))
    views_admin.add_verbs(verbs, add_data)


def _setup_run(parser: argparse.ArgumentParser, add_data: AddData) -> Handler:
    parser.add_argument("view", metavar="VIEW.json", help="the ViewDefinition (JSON file)")
    parser.add_argument(
        "--resources",
        metavar="FILE",
        help="read resources from an NDJSON file (or a JSON Bundle / array) instead of the store in --data",
    )
    add_data(parser)
    parser.add_argument("--format", choices=FORMATS, default="json", help="json (default): one array; ndjson; csv")
    parser.add_argument("--fallback", action="store_true", help="evaluate every path with fhirpathpy (slow)")
    return cmd_run


def _setup_test(parser: argparse.ArgumentParser, add_data: AddData) -> Handler:
    parser.add_argument("directory", metavar="DIR", help="folder of official-format SQL on FHIR test files")
    parser.add_argument("--report", metavar="FILE", help="write the official test-report JSON here")
    parser.add_argument("--fallback", action="store_true", help="evaluate every path with fhirpathpy (slow)")
    return cmd_test


def cmd_run(args: argparse.Namespace) -> int:
    """Evaluate the view and write its rows to stdout."""
    from fhirgate.analytics.sof import load_view, run_view

    if not Path(args.view).is_file():
        raise InvalidInput("VIEW.json", f"file not found: {args.view}")
    view = load_view(Path(args.view))
    if args.resources:
        rows = run_view(view, read_resources(Path(args.resources)), force_fallback=args.fallback)
        write_rows(rows, view.column_names, args.format, sys.stdout)
        return 0
    from fhirgate.database import resolve_key
    from fhirgate.location import open_location
    from fhirgate.store.factory import open_store

    store = open_store(open_location(args.data), key=resolve_key(args.key_file), create=False)
    try:
        bodies = (stored.body for stored in store.iter_type(view.resource))
        write_rows(run_view(view, bodies, force_fallback=args.fallback), view.column_names, args.format, sys.stdout)
    finally:
        store.close()
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    """Run every test file in DIR; print the tally; non-zero exit when any case failed."""
    from fhirgate.analytics.sof.testsuite import report, run_directory

    results = run_directory(Path(args.directory), force_fallback=args.fallback)
    failed = [r for r in results if not r.passed]
    for res in failed:
        print(f"FAIL {res.file}: {res.name}: {res.error}", file=sys.stderr)
    if args.report:
        Path(args.report).write_text(json.dumps(report(results), indent=2) + "\n", encoding="utf-8")
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def read_resources(path: Path) -> Iterator[dict[str, Any]]:
    """Resources from NDJSON (one per line), or from a JSON Bundle, array or single resource."""
    if not path.is_file():
        raise InvalidInput("--resources", f"file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise InvalidInput("--resources", f"cannot read {path.name} as UTF-8 text") from None
    try:
        whole = json.loads(text)
    except ValueError:
        whole = None
    if whole is not None:
        yield from _unwrap(whole)
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            raise InvalidInput("--resources", f"line {number} is not JSON") from None
        yield from _unwrap(item)


def _unwrap(item: Any) -> Iterator[dict[str, Any]]:
    if isinstance(item, list):
        for element in item:
            yield from _unwrap(element)
    elif isinstance(item, dict) and item.get("resourceType") == "Bundle":
        for entry in item.get("entry") or ():
            if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                yield entry["resource"]
    elif isinstance(item, dict):
        yield item


def write_rows(rows: Iterable[dict[str, Any]], columns: list[str], fmt: str, out: IO[str]) -> int:
    """Write rows as json (one array, columns in view order), ndjson or csv; returns the row count."""
    count = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row[c]) for c in columns])
            count += 1
        return count
    if fmt == "ndjson":
        for row in rows:
            out.write(json.dumps(row, default=str) + "\n")
            count += 1
        return count
    out.write("[")
    for row in rows:
        out.write(("," if count else "") + "\n  " + json.dumps(row, default=str))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, default=str)
    return str(value)
