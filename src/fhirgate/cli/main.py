"""The `fhirgate` command: argument parsing and dispatch; each verb's work lives in its own module."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from fhirgate import __version__
from fhirgate.cli import (
    approvals_cmd,
    audit_cmd,
    auth_cmd,
    codes_cmd,
    config_cmd,
    data_cmd,
    policy_cmd,
    report_cmd,
    serve_cmd,
    views_cmd,
)
from fhirgate.config import DEFAULT_DATA_DIR
from fhirgate.errors import FhirgateError

Handler = Callable[[argparse.Namespace], int]


def _data_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        default=DEFAULT_DATA_DIR,
        metavar="DIR|URL",
        help="where the store, audit log, settings and keys live: a data directory (SQLite files; default: "
        f"{DEFAULT_DATA_DIR}) or a PostgreSQL URL postgresql://USER@HOST/DB[?schema=NAME] (docs/postgres.md)",
    )
    parser.add_argument(
        "--key-file",
        metavar="FILE",
        help="encryption key for the store and audit databases (else $FHIRGATE_DB_KEY_FILE or $FHIRGATE_DB_KEY)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser; each sub-command sets `handler`."""
    parser = argparse.ArgumentParser(
        prog="fhirgate",
        description="Serve a practice's FHIR R4 data to AI assistants over MCP, SMART-scoped and audited.",
    )
    parser.add_argument("--version", action="version", version=f"fhirgate {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details (ids only, no PHI)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    for register in (
        data_cmd.register,
        auth_cmd.register,
        serve_cmd.register,
        config_cmd.register,
        audit_cmd.register,
        views_cmd.register,
        report_cmd.register,
        policy_cmd.register,
        codes_cmd.register,
        approvals_cmd.register,
    ):
        register(sub, _data_option)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handler: Handler = args.handler
    try:
        return handler(args)
    except FhirgateError as exc:
        print(f"fhirgate: error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fhirgate: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
