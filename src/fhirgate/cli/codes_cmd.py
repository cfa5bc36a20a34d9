"""`fhirgate codes lookup (TEXT | --code CODE) [--system S] [--limit N] [--format table|json]`: offline code lookup.

With a store in the data directory, the lookup runs through the same Gateway use case as the MCP lookup_code
tool (policy, one audit record) as the local operator (see report_cmd), and includes the codes seen in the
practice's data. Without a store it uses ICD-10-CM and the curated synonyms only, says so on stderr, and
touches no data (nothing to audit). Exit status: 0 with matches, 1 when nothing matched (like grep) or on
error, so scripts can tell "no code for this" from a result.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import IO, Any

from fhirgate.terminology.lookup import MAX_LIMIT
from fhirgate.terminology.systems import SYSTEMS

AddData = Callable[[argparse.ArgumentParser], None]
NO_MATCH_EXIT = 1


def register(sub: Any, add_data: AddData) -> None:
    """Add the `codes` command group (`codes lookup`)."""
    p = sub.add_parser(
        "codes",
        help="clinical terminology offline: words -> codes, a code -> its meaning",
        description="Look up clinical codes offline (ICD-10-CM, curated synonyms, codes seen in the data).",
    )
    verbs = p.add_subparsers(dest="codes_command", metavar="VERB")
    verbs.required = True
    lookup = verbs.add_parser(
        "lookup",
        help="words -> ranked candidate codes, or --code CODE -> its display and ICD-10-CM hierarchy",
        description="Words -> ranked candidate codes; --code CODE -> its display (and ICD-10-CM hierarchy).",
    )
    lookup.add_argument("text", nargs="?", metavar="TEXT", help="clinical words, e.g. 'HbA1c' or 'high blood pressure'")
    lookup.add_argument("--code", help="a code to explain, e.g. E11.9 or http://loinc.org|4548-4")
    lookup.add_argument("--system", help=f"restrict to one system: {', '.join(SYSTEMS)} (or its URI)")
    lookup.add_argument("--limit", type=int, default=10, help=f"most candidates, 1-{MAX_LIMIT} (default 10)")
    lookup.add_argument("--format", choices=("table", "json"), default="table", help="table (default) or json")
    lookup.add_argument("--token", help="run as the principal of this JWT (else $FHIRGATE_TOKEN when set)")
    lookup.add_argument("--profile", help="run as a local profile from fhirgate.toml [profiles.NAME]")
    add_data(lookup)
    lookup.set_defaults(handler=cmd_lookup)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from fhirgate.location import open_location

    data_dir = open_location(args.data)
    if not data_dir.exists():
        from fhirgate.terminology.lookup import Terminology

        print(f"fhirgate: note: no store in {data_dir.name}: ICD-10-CM and curated synonyms only", file=sys.stderr)
        result = Terminology().lookup(text=args.text, code=args.code, system=args.system, limit=args.limit)
        return result.to_dict()

    from fhirgate.app import build_gateway
    from fhirgate.cli.report_cmd import _principal
    from fhirgate.database import resolve_key
    from fhirgate.service.context import RequestContext

    principal = _principal(args, data_dir)
    gateway = build_gateway(data_dir, key=resolve_key(args.key_file))
    try:
        ctx = RequestContext(principal, transport="cli", method="cli", name="codes lookup")
        return gateway.lookup_code(ctx, text=args.text, code=args.code, system=args.system, limit=args.limit)
    finally:
        gateway.close()


def cmd_lookup(args: argparse.Namespace) -> int:
    """Run one lookup and print it; 1 when nothing matched."""
    result = _run(args)
    if args.format == "json":
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        write_table(result, sys.stdout)
    return 0 if result["status"] == "match" else NO_MATCH_EXIT


def _rows(out: IO[str], items: list[dict[str, Any]]) -> None:
    columns = ("score", "system", "code", "display", "source", "match", "seen")
    cells = [
        [f"{c['score']:.2f}", c["system"], c["code"], c["display"][:60], c["source"], c["match"],
         "yes" if c["seen_in_data"] else ""]
        for c in items
    ]  # fmt: skip
    widths = [max(len(col), *(len(row[i]) for row in cells)) for i, col in enumerate(columns)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    for row in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")


def write_table(result: dict[str, Any], out: IO[str]) -> None:
    """Matches as an aligned table, then corrections, hierarchy or the no-match note and suggestions."""
    for fix in result["corrections"]:
        out.write(f"read '{fix['term']}' as: {', '.join(fix['read_as'])}\n")
    if result["status"] != "match":
        out.write(f"no match. {result['note']}\n")
        if result["suggestions"]:
            out.write("\nSuggestions (NOT matches: they share only some of the words):\n")
            _rows(out, result["suggestions"])
        return
    _rows(out, result["matches"])
    if result["total"] > len(result["matches"]):
        out.write(f"... {result['total']} candidates in all; raise --limit for more\n")
    hierarchy = result.get("hierarchy")
    if hierarchy:
        out.write("\nAncestors:\n")
        for a in hierarchy["ancestors"]:
            out.write(f"  {a['code']:<10} {a['kind']:<11} {a['display']}\n")
        out.write(f"Descendants ({hierarchy['descendants_total']}):\n")
        for d in hierarchy["descendants"]:
            out.write(f"  {d['code']:<10} {d['display']}\n")
        if hierarchy["descendants_omitted"]:
            out.write(f"  ... {hierarchy['descendants_omitted']} more\n")
        below = hierarchy["below_search"]
        out.write(f"Search everything below it: {below['param']}={below['value']}\n")
