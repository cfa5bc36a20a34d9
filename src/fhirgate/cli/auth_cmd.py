"""`fhirgate token`: mint a development token from the data directory's local issuer."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from fhirgate.location import open_location

AddData = Callable[[argparse.ArgumentParser], None]


def register(sub: Any, add_data: AddData) -> None:
    """Add the token sub-command."""
    p = sub.add_parser(
        "token",
        help="mint a SMART-scoped JWT from the local development issuer (for demos and tests)",
        description="Prints a signed JWT on stdout. Only a data directory configured to trust the local "
        "development issuer (demo-data does this) accepts it; production uses an external issuer.",
    )
    add_data(p)
    p.add_argument("--scope", required=True, help='space-separated SMART scopes, e.g. "user/*.rs" or "patient/*.rs"')
    p.add_argument("--patient", metavar="ID", help="patient in context (required for patient/ scopes)")
    p.add_argument("--fhir-user", metavar="TYPE/ID", help="the fhirUser claim, e.g. Practitioner/123")
    p.add_argument("--ttl", default="1h", help="lifetime: 3600, 30m, 1h, 2d (default 1h)")
    p.add_argument("--sub", default="dev-user", help="subject claim (default dev-user)")
    p.add_argument("--client-id", default="fhirgate-dev", help="client_id claim (default fhirgate-dev)")
    p.add_argument("--purpose", action="append", default=[], metavar="CODE", help="purpose of use (repeatable)")
    p.add_argument("--role", metavar="NAME", help="governance role claim, e.g. front_desk (see `fhirgate policy show`)")
    p.add_argument("--audience", help="token audience (default: this data directory's server resource URL)")
    p.set_defaults(handler=cmd_token)


def cmd_token(args: argparse.Namespace) -> int:
    """Mint and print a token; warn on stderr when the data directory would not trust it."""
    from fhirgate.auth.devissuer import parse_ttl
    from fhirgate.core.policy.scopes import ScopeSet
    from fhirgate.errors import InvalidInput

    data_dir = open_location(args.data).ensure()
    settings = data_dir.settings()
    scopes = ScopeSet.parse(args.scope)
    if scopes.rejected:
        raw, reason = scopes.rejected[0]
        raise InvalidInput(
            "--scope", f"{raw!r} is not a SMART scope: {reason}", "e.g. patient/*.rs user/Observation.rs"
        )
    if scopes.has_context("patient") and not args.patient:
        raise InvalidInput("--patient", "patient/ scopes need a patient in context", "--patient ID")
    issuer = data_dir.dev_issuer()
    token = issuer.mint(
        scope=args.scope,
        audience=args.audience or settings.resource_url,
        subject=args.sub,
        patient=args.patient,
        fhir_user=args.fhir_user,
        client_id=args.client_id,
        ttl_seconds=parse_ttl(args.ttl),
        purpose_of_use=args.purpose,
        role=args.role,
    )
    if not settings.trust_dev_issuer:
        print(
            "warning: this data directory does not trust the development issuer; set "
            "[auth] trust_dev_issuer = true in fhirgate.toml to accept this token",
            file=sys.stderr,
        )
    print(token)
    return 0
