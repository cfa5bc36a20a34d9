"""Connection settings checked by a real client: Claude Code connects with what `fhirgate config` prints.

- HTTP: the `claude mcp add --transport http … --header "Authorization: Bearer …"` command from
  `fhirgate config claude-code`;
- stdio: the server entry of `fhirgate config claude-desktop` (Claude Desktop's claude_desktop_config.json uses the
  same command/args/env entry), added with `claude mcp add-json`.
`claude mcp list` connects to each server (MCP initialize) and prints its health.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_support import client_bin, fhirgate, free_port, make_demo, node_env, running_server

pytestmark = [pytest.mark.node, pytest.mark.slow]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    data = tmp_path_factory.mktemp("claude") / "data"
    port = free_port()
    make_demo(data, port)
    with running_server(data, port) as url:
        yield data, url


def claude(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run Claude Code with its own HOME (its config lives there) in a throw-away project folder."""
    home.mkdir(parents=True, exist_ok=True)
    env = node_env(HOME=str(home), DISABLE_AUTOUPDATER="1", CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1")
    cmd = [str(client_bin("claude")), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=home, check=False)


def health(listing: str, name: str) -> str:
    match = re.search(rf"^{re.escape(name)}: .* - (.+)$", listing, re.MULTILINE)
    assert match, listing
    return match.group(1)


def test_claude_code_connects_over_http_with_the_printed_command(served: tuple[Path, str], tmp_path: Path) -> None:
    data, url = served
    command = fhirgate("config", "claude-code", "--data", str(data), "--mint-scope", "user/*.rs").strip()
    argv = shlex.split(command)
    assert argv[:2] == ["claude", "mcp"]
    assert url in argv
    added = claude(tmp_path, *argv[1:])
    assert added.returncode == 0, added.stderr
    listing = claude(tmp_path, "mcp", "list")
    assert "Connected" in health(listing.stdout, "fhirgate")


def test_claude_code_connects_over_stdio_with_the_desktop_config(served: tuple[Path, str], tmp_path: Path) -> None:
    data, _ = served
    config = json.loads(fhirgate("config", "claude-desktop", "--data", str(data), "--mint-scope", "user/*.rs"))
    entry = config["mcpServers"]["fhirgate"]
    assert Path(entry["command"]).is_absolute()
    assert "FHIRGATE_TOKEN" in entry["env"]
    added = claude(tmp_path, "mcp", "add-json", "fhirgate-stdio", json.dumps({"type": "stdio", **entry}))
    assert added.returncode == 0, added.stderr
    listing = claude(tmp_path, "mcp", "list")
    assert "Connected" in health(listing.stdout, "fhirgate-stdio")


def test_claude_code_is_refused_with_a_bad_token(served: tuple[Path, str], tmp_path: Path) -> None:
    _, url = served
    bad = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."  # alg=none
    added = claude(tmp_path, "mcp", "add", "--transport", "http", "fhirgate", url, "--header",
                   f"Authorization: Bearer {bad}")  # fmt: skip
    assert added.returncode == 0, added.stderr
    listing = claude(tmp_path, "mcp", "list")
    assert "Connected" not in health(listing.stdout, "fhirgate")
