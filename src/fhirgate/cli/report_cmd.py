"""`fhirgate report NAME [--param k=v ...] [--format json|table]`: run a practice report from the shell.

The report runs through the same Gateway use case as the MCP run_report tool (SQL sandbox, policy, one
audit record). The caller is `--token` (a JWT verified like a bearer token), `--profile NAME` (fhirgate.toml
[profiles.NAME]) or, by default, the local operator: whoever holds the data directory and its key can read
the whole store anyway, so the default principal has practice-wide read scope (system/*.rs) and is audited
as `local-cli:<user>`.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import IO, Any

from fhirgate.errors import InvalidInput

AddData = Callable[[argparse.ArgumentParser], None]
LOCAL_ISSUER = "urn:fhirgate:local-cli"
MAX_CELL = 40


def register(sub: Any, add_data: AddData) -> None:
    """Add the `report` sub-command."""
    p = sub.add_parser(
        "report",
        help="run a practice report (no-shows, patients not seen, care gaps...); --list shows them",
        description="Run a predefined practice report over the store's views, audited like the MCP tool.",
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="the report (see --list)")
    add_data(p)
    p.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="K=V",
        help="a report parameter, repeatable: --param period=last_month --param today=2026-11-21",
    )
    p.add_argument("--format", choices=("json", "table"), default="table", help="table (default) or json")
    p.add_argument("--list", action="store_true", help="list the reports and their parameters")
    p.add_argument("--token", help="run as the principal of this JWT (else $FHIRGATE_TOKEN when set)")
    p.add_argument("--profile", help="run as a local profile from fhirgate.toml [profiles.NAME]")
    p.set_defaults(handler=cmd_report)


def parse_params(pairs: Sequence[str]) -> dict[str, str]:
    """`k=v` strings into a dict; InvalidInput naming --param when one is malformed or repeated."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidInput("--param", f"{pair[:40]!r} is not KEY=VALUE", "e.g. --param period=last_month")
        if key in out:
            raise InvalidInput("--param", f"{key!r} is given twice", "each parameter once")
        out[key] = value.strip()
    return out


def _principal(args: argparse.Namespace, data_dir: Any) -> Any:
    from fhirgate.core.policy.principal import Principal
    from fhirgate.core.policy.scopes import ScopeSet

    token = args.token or os.environ.get("FHIRGATE_TOKEN")
    if token or args.profile:
        from fhirgate.app import build_verifier
        from fhirgate.mcp.stdio import stdio_principal

        settings = data_dir.settings()
        return stdio_principal(
            token=token,
            profile=args.profile,
            verifier=build_verifier(data_dir, settings) if token else None,
            profiles=settings.extra.get("profiles", {}),
        )
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return Principal(
        sub=f"local-cli:{user}", issuer=LOCAL_ISSUER, scopes=ScopeSet.parse("system/*.rs"), client_id="fhirgate-cli"
    )


def cmd_report(args: argparse.Namespace) -> int:
    """Run the report and print it (or list the reports)."""
    from fhirgate.analytics.reports.registry import get_report, reports

    if args.list:
        write_list([spec.describe() for spec in reports().values()], args.format, sys.stdout)
        return 0
    if not args.name:
        raise InvalidInput("NAME", "missing report name", ", ".join(reports()))
    get_report(args.name)  # unknown names fail before the store is opened
    params = parse_params(args.param)

    from fhirgate.app import build_gateway
    from fhirgate.database import resolve_key
    from fhirgate.location import open_location
    from fhirgate.service.context import RequestContext

    data_dir = open_location(args.data)
    principal = _principal(args, data_dir)
    gateway = build_gateway(data_dir, key=resolve_key(args.key_file))
    try:
        ctx = RequestContext(principal, transport="cli", method="cli", name=f"report {args.name}")
        result = gateway.run_report(ctx, args.name, params)
    finally:
        gateway.close()
    if args.format == "json":
        sys.stdout.write(json.dumps(result, indent=2, default=str) + "\n")
    else:
        write_table(result, sys.stdout)
    return 0


def _cell(value: Any) -> str:
    text = "" if value is None else f"{value:.4g}" if isinstance(value, float) and abs(value) < 1 else str(value)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 3] + "..."


def write_table(result: dict[str, Any], out: IO[str]) -> None:
    """The headline, the rows as an aligned table, the paging note and the definition."""
    out.write(f"{result['title']}\n{result['headline']}\n\n")
    rows = result["rows"]
    if rows:
        columns = list(rows[0])
        cells = [[_cell(r.get(c)) for c in columns] for r in rows]
        widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
        out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
        for row in cells:
            out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")
    else:
        out.write("(no rows)\n")
    page = result["page"]
    if page.get("next_offset") is not None:
        out.write(f"... {page['total_rows']} rows in all; next page: --param offset={page['next_offset']}\n")
    out.write("\nDefinition:\n")
    for key, value in result["definition"].items():
        text = json.dumps(value) if isinstance(value, dict | list) else str(value)
        out.write(f"  {key}: {text}\n")


def write_list(specs: list[dict[str, Any]], fmt: str, out: IO[str]) -> None:
    """The reports and their parameters."""
    if fmt == "json":
        out.write(json.dumps(specs, indent=2, default=str) + "\n")
        return
    for spec in specs:
        out.write(f"{spec['name']}: {spec['description']}\n")
        for p in spec["params"]:
            default = "" if p.get("default") is None else f" (default {p['default']})"
            out.write(f"    {p['name']}{default}: {p['description']}\n")
        out.write("\n")
