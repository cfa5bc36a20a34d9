"""`fhirgate config CLIENT`: print ready client settings for this install (Claude Desktop, Claude Code, Cursor)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from fhirgate.cli import connect
from fhirgate.errors import InvalidInput
from fhirgate.location import Location, open_location

AddData = Callable[[argparse.ArgumentParser], None]
CLIENTS = ("claude-desktop", "claude-code", "cursor")


def register(sub: Any, add_data: AddData) -> None:
    """Add the config sub-command."""
    p = sub.add_parser(
        "config",
        help="print ready-to-use client settings: claude-desktop (stdio JSON), claude-code, cursor",
        description="Prints settings for one client on stdout. The caller's identity comes from --token (a JWT "
        "from your issuer), --profile (a [profiles.NAME] in fhirgate.toml; stdio only), or --mint-scope (a token "
        "from the local development issuer, which the data directory must trust).",
    )
    p.add_argument("client", choices=CLIENTS)
    add_data(p)
    who = p.add_mutually_exclusive_group()
    who.add_argument("--token", help="the JWT the client presents")
    who.add_argument("--profile", help="claude-desktop only: a local profile from fhirgate.toml")
    who.add_argument(
        "--mint-scope", metavar="SCOPES", help='mint a dev token with these SMART scopes, e.g. "user/*.rs"'
    )
    p.add_argument("--patient", help="with --mint-scope: the patient in context")
    p.add_argument("--fhir-user", help="with --mint-scope: the fhirUser claim, e.g. Practitioner/123")
    p.add_argument("--ttl", default="8h", help="with --mint-scope: token lifetime (default 8h)")
    p.add_argument("--url", help="claude-code/cursor: the MCP endpoint (default: server.resource_url)")
    p.set_defaults(handler=cmd_config)


def _token(args: argparse.Namespace, data_dir: Location, audience: str) -> str | None:
    if args.token:
        return str(args.token)
    if not args.mint_scope:
        return None
    from fhirgate.auth.devissuer import parse_ttl
    from fhirgate.core.policy.scopes import ScopeSet

    scopes = ScopeSet.parse(args.mint_scope)
    if scopes.rejected:
        raw, reason = scopes.rejected[0]
        raise InvalidInput("--mint-scope", f"{raw!r} is not a SMART scope: {reason}", "e.g. user/*.rs")
    if scopes.has_context("patient") and not args.patient:
        raise InvalidInput("--patient", "patient/ scopes need a patient in context", "--patient ID")
    if not data_dir.settings().trust_dev_issuer:
        print("warning: this data directory does not trust the development issuer", file=sys.stderr)
    return data_dir.dev_issuer().mint(
        scope=args.mint_scope,
        audience=audience,
        patient=args.patient,
        fhir_user=args.fhir_user,
        ttl_seconds=parse_ttl(args.ttl),
    )


def cmd_config(args: argparse.Namespace) -> int:
    """Print the chosen client's settings."""
    data_dir = open_location(args.data)
    settings = data_dir.settings()
    token = _token(args, data_dir, settings.resource_url)
    if args.client == "claude-desktop":
        if not token and not args.profile:
            raise InvalidInput(
                "--token", "stdio needs an identity", "--token JWT, --profile NAME or --mint-scope SCOPES"
            )
        print(connect.claude_desktop(data_dir, token=token, profile=args.profile))
        return 0
    if args.profile:
        raise InvalidInput("--profile", "profiles apply to stdio (claude-desktop) only")
    if not token:
        raise InvalidInput("--token", "HTTP clients present a bearer token", "--token JWT or --mint-scope SCOPES")
    url = args.url or settings.resource_url
    if args.client == "claude-code":
        print(connect.claude_code(url, token))
    else:
        print(connect.cursor(url, token))
    return 0
