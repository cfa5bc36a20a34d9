"""`fhirgate serve` (stdio or Streamable HTTP) and `fhirgate demo` (generate, mint, explain, serve)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from fhirgate.cli import connect
from fhirgate.database import resolve_key
from fhirgate.errors import InvalidInput
from fhirgate.location import open_location

AddData = Callable[[argparse.ArgumentParser], None]
DEFAULT_HTTP = "127.0.0.1:8765"


def register(sub: Any, add_data: AddData) -> None:
    """Add the serve and demo sub-commands."""
    p = sub.add_parser("serve", help="serve the MCP server over stdio or Streamable HTTP")
    add_data(p)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--http", nargs="?", const=DEFAULT_HTTP, metavar="HOST:PORT", help=f"default {DEFAULT_HTTP}")
    mode.add_argument("--stdio", action="store_true", help="serve one client over stdin/stdout")
    p.add_argument("--token", help="stdio: the caller's JWT (else $FHIRGATE_TOKEN), verified like a bearer token")
    p.add_argument("--profile", help="stdio: a named local profile from fhirgate.toml [profiles.NAME]")
    p.add_argument("--certfile", help="HTTP: TLS certificate (PEM) to serve HTTPS directly")
    p.add_argument("--keyfile", help="HTTP: TLS private key (PEM)")
    p.add_argument(
        "--policy", metavar="FILE", help="governance policy file (default: fhirgate.toml [policy] file, else built-in)"
    )
    p.add_argument(
        "--allow-writes",
        action="store_true",
        help="turn the write tools on (read-only by default); each write is a proposal the user confirms or "
        "another human approves, and only for the types a role's write_types allow",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="HTTP: N server processes behind the one port (default 1); more than one needs the policy's "
        "[rate_limits] redis_url so the workers share rate limits",
    )
    p.add_argument(
        "--fhir-base",
        metavar="URL",
        help="serve an upstream FHIR R4 server instead of the embedded store (overrides fhirgate.toml [upstream] "
        "base_url; auth from [upstream]); read-only: analytics and write tools are not available",
    )
    p.add_argument(
        "--fhir-api",
        action="store_true",
        help="HTTP: also serve the store as a FHIR R4 REST API at /fhir, under the same tokens, policy and audit",
    )
    p.set_defaults(handler=cmd_serve)

    d = sub.add_parser(
        "demo",
        help="generate the demo practice (first run), mint a dev token, print how to connect, and serve HTTP",
    )
    add_data(d)
    d.add_argument("--patients", type=int, default=200, help="patients in a new demo practice (default 200)")
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--http", default=DEFAULT_HTTP, metavar="HOST:PORT")
    d.add_argument("--no-serve", action="store_true", help="print the connection details and exit")
    d.set_defaults(handler=cmd_demo)


def parse_host_port(value: str) -> tuple[str, int]:
    """`HOST:PORT` (or `:PORT`) into parts."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput("--http", f"{value!r} is not HOST:PORT", "e.g. 127.0.0.1:8765")
    return (host.strip("[]") or "127.0.0.1"), int(port)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the server until interrupted."""
    from fhirgate import app

    data_dir = open_location(args.data)
    key = resolve_key(args.key_file)
    if args.stdio:
        if args.certfile or args.keyfile:
            raise InvalidInput("--certfile", "TLS applies to --http only")
        if getattr(args, "fhir_api", False):
            raise InvalidInput("--fhir-api", "the FHIR API is served over HTTP only", "serve --http --fhir-api")
        if args.workers != 1:
            raise InvalidInput("--workers", "several workers apply to --http only")
        token = args.token or os.environ.get("FHIRGATE_TOKEN")
        app.run_stdio(
            data_dir,
            key=key,
            token=token,
            profile=args.profile,
            policy_file=args.policy,
            allow_writes=args.allow_writes,
            fhir_base=getattr(args, "fhir_base", None),
        )
        return 0
    if args.token or args.profile:
        raise InvalidInput("--token", "--token and --profile are for --stdio; HTTP clients send bearer tokens")
    if bool(args.certfile) != bool(args.keyfile):
        raise InvalidInput("--certfile", "give both --certfile and --keyfile for HTTPS")
    if args.workers < 1:
        raise InvalidInput("--workers", f"{args.workers} is not a number of processes", "e.g. --workers 2")
    host, port = parse_host_port(args.http or DEFAULT_HTTP)
    app.run_http(
        data_dir,
        key=key,
        host=host,
        port=port,
        certfile=args.certfile,
        keyfile=args.keyfile,
        policy_file=args.policy,
        allow_writes=args.allow_writes,
        workers=args.workers,
        key_file=args.key_file,
        fhir_base=getattr(args, "fhir_base", None),
        fhir_api=getattr(args, "fhir_api", False),
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The one-command demo: data (first run only), a token, connection help, then the HTTP server."""
    from fhirgate.cli.data_cmd import cmd_demo_data

    data_dir = open_location(args.data)
    if not data_dir.exists():
        ns = argparse.Namespace(
            data=args.data,
            key_file=args.key_file,
            patients=args.patients,
            seed=args.seed,
            today=None,
            no_progress=False,
        )
        cmd_demo_data(ns)
    else:
        data_dir.update_settings("auth", {"trust_dev_issuer": True})
    host, port = parse_host_port(args.http)
    url = f"http://{host}:{port}/mcp"
    data_dir.update_settings("server", {"resource_url": url})
    token = data_dir.dev_issuer().mint(
        scope="openid fhirUser user/*.rs", audience=url, subject="demo-user", ttl_seconds=8 * 3600
    )
    print(connect.connection_help(data_dir, url, token))
    if args.no_serve:
        return 0
    ns = argparse.Namespace(
        data=args.data,
        key_file=args.key_file,
        stdio=False,
        http=args.http,
        token=None,
        profile=None,
        certfile=None,
        keyfile=None,
        policy=None,
        allow_writes=False,
        workers=1,
    )
    return cmd_serve(ns)
