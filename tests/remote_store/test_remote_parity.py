"""Parity: the same questions through the embedded store and through RemoteStore on fhirgate's own FHIR API.

Starts `fhirgate serve --http 127.0.0.1:PORT --fhir-api` over a demo data directory in a separate process, with
the upstream credential a static dev token (`fhirgate token`, system/*.rs) and compares answers. Skipped when this
build's `serve` has no `--fhir-api`.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_upstream import bodies
from remote_support import TODAY, USER, call

from fhirgate.app import build_gateway
from fhirgate.config import DataDir
from fhirgate.core.fhir.search import parse_search
from fhirgate.remote import FhirClient, StaticTokenAuth
from fhirgate.service.gateway import Gateway
from fhirgate.store.contract import FhirStore
from fhirgate.store.remote import RemoteStore

A = "pat-000000"
_SCRIPT = Path(sys.executable).parent / "fhirgate"  # the console script beside this interpreter
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-c", "from fhirgate.cli.main import main; main()"]


def _cli(*args: str) -> str:
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(FHIR base URL, static token) of a `fhirgate serve --fhir-api` process over the same demo practice."""
    if "--fhir-api" not in _cli("serve", "--help"):
        pytest.skip("`fhirgate serve --fhir-api` does not exist in this build yet: no fhirgate FHIR API to compare")
    root = tmp_path_factory.mktemp("parity-upstream")
    _cli(
        "demo-data",
        "--data",
        str(root),
        "--patients",
        "12",
        "--seed",
        "7",
        "--today",
        TODAY.isoformat(),
        "--no-progress",
    )
    port = _free_port()
    DataDir(root).update_settings("server", {"resource_url": f"http://127.0.0.1:{port}/mcp"})
    token = _cli("token", "--data", str(root), "--scope", "system/*.rs", "--sub", "fhirgate-parity", "--ttl", "1h")
    server = subprocess.Popen(
        [*CLI, "serve", "--data", str(root), "--http", f"127.0.0.1:{port}", "--fhir-api"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/metadata", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                err = server.stderr.read().decode()[-2000:] if server.stderr else ""
                pytest.fail(f"fhirgate serve --fhir-api did not start: {err}")
            time.sleep(0.2)
        yield base, token.strip()
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def remote(upstream: tuple[str, str]) -> Iterator[RemoteStore]:
    base, token = upstream
    store = RemoteStore(FhirClient(base, StaticTokenAuth(token)))
    yield store
    store.close()


def _strip(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}


def test_reads_and_searches_agree(remote: RemoteStore, embedded: FhirStore) -> None:
    mine, theirs = embedded.read("Patient", A), remote.read("Patient", A)
    assert mine is not None and theirs is not None
    assert _strip(theirs.body) == _strip(mine.body)
    query = parse_search("Condition", [("subject", f"Patient/{A}"), ("_count", "5"), ("_sort", "_id")])
    got: list[tuple[str, str]] = []
    offset: int | None = 0
    while offset is not None:
        page = remote.search(replace(query, offset=offset))
        got += bodies(page.matches)
        offset = page.next_offset
    want = bodies(embedded.search(replace(query, count=100)).matches)
    assert got == want


def test_compartment_agrees(remote: RemoteStore, embedded: FhirStore) -> None:
    types = ["Patient", "Encounter", "Condition"]
    want = sorted(bodies(embedded.compartment_page(A, types=types, count=500).matches))
    got: list[tuple[str, str]] = []
    offset: int | None = 0
    while offset is not None:
        page = remote.compartment_page(A, types=types, count=20, offset=offset)
        got += bodies(page.matches)
        offset = page.next_offset
    assert sorted(got) == want


async def test_tool_answers_agree(
    remote: RemoteStore, demo_dir: DataDir, embedded_gateway: Gateway, tmp_path: Path
) -> None:
    audit_dir = DataDir(tmp_path).ensure()  # the remote gateway's own audit log, keys and proposals
    gateway = build_gateway(audit_dir, key=None, store=remote)
    try:
        questions: list[tuple[str, dict[str, Any]]] = [
            ("search_resources", {"resource_type": "Encounter", "params": {"subject": f"Patient/{A}"}, "count": 50}),
            ("read_resource", {"resource_type": "Patient", "id": A}),
        ]
        for tool, args in questions:
            local, upstream = await call(embedded_gateway, USER, tool, args), await call(gateway, USER, tool, args)
            assert not upstream.is_error, upstream.content
            assert _ids(upstream.structured_content) == _ids(local.structured_content)
    finally:
        gateway.close()


def _ids(content: Any) -> list[str]:
    if "entries" in content:
        return [e["id"] for e in content["entries"]]
    return [content["ref"]]
