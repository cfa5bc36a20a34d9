"""Ready-to-paste client settings for this install: Claude Desktop, Claude Code, Cursor, the MCP Inspector.

Pure builders (no I/O besides locating the `fhirgate` executable), shared by `fhirgate demo` and
`fhirgate config`, so the connection docs, the demo output and the tests all use one source.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from typing import Any

from fhirgate.location import Location

INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"
# Shell expression for the token in printed commands; a JWT is safe inside double quotes.
TOKEN_FROM_ENV = "$FHIRGATE_TOKEN"  # noqa: S105 - a variable reference, not a secret


def fhirgate_executable() -> str:
    """The absolute path of the `fhirgate` console script of this installation."""
    beside = os.path.join(os.path.dirname(sys.executable), "fhirgate")
    return beside if os.path.exists(beside) else shutil.which("fhirgate") or beside


def stdio_server(data_dir: Location, *, token: str | None = None, profile: str | None = None) -> dict[str, Any]:
    """One stdio server entry: command, args and env (the token travels in env, never in args)."""
    args = ["serve", "--stdio", "--data", data_dir.name]
    if profile:
        args += ["--profile", profile]
    entry: dict[str, Any] = {"command": fhirgate_executable(), "args": args}
    if token:
        entry["env"] = {"FHIRGATE_TOKEN": token}
    return entry


def claude_desktop(data_dir: Location, *, token: str | None = None, profile: str | None = None) -> str:
    """claude_desktop_config.json content with one `fhirgate` stdio server."""
    return json.dumps({"mcpServers": {"fhirgate": stdio_server(data_dir, token=token, profile=profile)}}, indent=2)


def claude_code(url: str, bearer: str = TOKEN_FROM_ENV) -> str:
    """The `claude mcp add` command for the Streamable HTTP endpoint with a bearer header."""
    return f'claude mcp add --transport http fhirgate {url} --header "Authorization: Bearer {bearer}"'


def cursor(url: str, token: str) -> str:
    """.cursor/mcp.json content for the Streamable HTTP endpoint with a bearer header."""
    return json.dumps(
        {"mcpServers": {"fhirgate": {"url": url, "headers": {"Authorization": f"Bearer {token}"}}}}, indent=2
    )


def inspector(url: str, bearer: str = TOKEN_FROM_ENV) -> str:
    """An MCP Inspector CLI command listing the tools."""
    return f'npx {INSPECTOR} --cli {url} --header "Authorization: Bearer {bearer}" --method tools/list'


def connection_help(data_dir: Location, url: str, token: str) -> str:
    """What `fhirgate demo` prints: the endpoint, the token once, then each client's settings."""
    return "\n".join(
        [
            f"fhirgate MCP endpoint: {url}",
            "",
            "Development token (user/*.rs, 8 hours; mint others with `fhirgate token --help`):",
            f"  export FHIRGATE_TOKEN={token}",
            "",
            "Claude Code (HTTP):",
            f"  {claude_code(url)}",
            "",
            "MCP Inspector (needs Node 22; scripts/install-clients.sh installs it into clients/):",
            f"  {inspector(url)}",
            "",
            "Claude Desktop (stdio) - merge into claude_desktop_config.json (or run `fhirgate config claude-desktop`):",
            claude_desktop(data_dir, token=token),
            "",
            "Cursor, other clients: `fhirgate config cursor`; docs/clients.md.",
            "",
        ]
    )
