"""End to end: `fhirgate serve --workers 2` on a SQLite data directory under 40 concurrent MCP tool calls.

Both worker processes must take part (seen from outside: each holds client sockets during a burst of calls),
every call must succeed, and afterwards the one audit chain both workers appended to must verify and
hold exactly one record per HTTP request the clients sent.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp.client.streamable_http import streamable_http_client
from workers_support import make_demo, policy_with_redis

from fhirgate.audit.log import AuditLog
from fhirgate.auth.devissuer import DevIssuer
from fhirgate.config import DataDir
from mcp import Client

FHIRGATE = Path(sys.executable).with_name("fhirgate")
CLIENTS = 20
CALLS_PER_CLIENT = 2
ROUNDS = 6
pytestmark = pytest.mark.slow


@dataclass
class Server:
    url: str
    data_dir: DataDir
    proc: subprocess.Popen[bytes]
    workers: list[int]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(parent: int) -> list[int]:
    """uvicorn's worker processes: children of `parent` started by multiprocessing's spawn."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return sorted(found)


def _links(pid: int) -> list[str]:
    links = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            links.append(os.readlink(fd))
        except OSError:
            continue
    return links


def _sockets(pid: int) -> int:
    return sum(link.startswith("socket:") for link in _links(pid))


def _wait_until_both_accept(port: int, workers: list[int], deadline: float) -> None:
    """Hold batches of idle connections open until each worker has accepted one: its event loop is serving.

    A worker's gateway being built (audit.db open) does not mean its loop listens yet; on a loaded machine the
    second one can start seconds later, and connections made before that all go to the first.
    """
    while time.monotonic() < deadline:
        base = {w: _sockets(w) for w in workers}
        conns = [socket.create_connection(("127.0.0.1", port), timeout=2) for _ in range(8)]
        time.sleep(0.3)
        accepted = all(_sockets(w) > base[w] for w in workers)
        for conn in conns:
            conn.close()
        if accepted:
            time.sleep(0.2)  # let the workers drop the idle connections before the test counts sockets
            return
    raise AssertionError("both workers did not start accepting connections")


@pytest.fixture
def server(tmp_path: Path, redis_url: str) -> Iterator[Server]:
    if not Path("/proc/self/fd").exists():
        pytest.skip("needs /proc to tell the worker processes apart")
    data_dir = make_demo(tmp_path / "data", patients=30)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    data_dir.update_settings("server", {"resource_url": url})
    policy = policy_with_redis(tmp_path, redis_url)
    log = (tmp_path / "serve.log").open("wb")
    cmd = [str(FHIRGATE), "serve", "--data", str(data_dir.path), "--http", f"127.0.0.1:{port}", "--workers", "2"]
    proc = subprocess.Popen([*cmd, "--policy", str(policy)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60  # a few seconds on a quiet machine
        workers: list[int] = []
        while time.monotonic() < deadline:  # both workers built their gateway (audit.db open) and one listens
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            workers = _children(proc.pid)
            if len(workers) == 2 and all(any(p.endswith("audit.db") for p in _links(w)) for w in workers):
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json() == {"status": "ok"}:
                        break
                except httpx.HTTPError:
                    pass
            time.sleep(0.1)
        else:
            raise AssertionError("workers did not start: " + (tmp_path / "serve.log").read_text())
        _wait_until_both_accept(port, workers, deadline)
        yield Server(url, data_dir, proc, workers)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
    startup = (tmp_path / "serve.log").read_text()
    assert "workers: 2 processes behind one port; rate limits shared through Redis" in startup


async def _client(server: Server, token: str, sent: list[str], errors: list[str], finished: Any) -> None:
    async def count(request: Any) -> None:
        sent.append(request.method)

    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {token}"}, timeout=30, event_hooks={"request": [count]}
    )
    try:
        async with http, Client(streamable_http_client(server.url, http_client=http)) as client:
            found = await client.call_tool("find_patients", {"count": 5})
            ids = [p["id"] for p in (found.structured_content or {}).get("patients", [])]
            summary = await client.call_tool("patient_summary", {"patient_id": ids[len(sent) % len(ids)]})
            errors.extend(r.content[0].text for r in (found, summary) if r.is_error)  # type: ignore[union-attr]
            await finished()
    except Exception as exc:
        errors.append(repr(exc))
        raise


async def _round(server: Server, tokens: list[str], sent: list[str], errors: list[str]) -> set[int]:
    """One burst of concurrent clients; the workers that held client connections when all of them had finished."""
    before = {pid: _sockets(pid) for pid in server.workers}
    during: dict[int, int] = {}
    release = asyncio.Event()
    done = 0

    async def finished() -> None:
        nonlocal done
        done += 1
        if done == len(tokens):  # every client still holds its keep-alive connection: count sockets now
            during.update({pid: _sockets(pid) for pid in server.workers})
            release.set()
        await asyncio.wait_for(release.wait(), 20)

    await asyncio.gather(*(_client(server, t, sent, errors, finished) for t in tokens))
    return {pid for pid in server.workers if during.get(pid, 0) > before[pid]}


async def test_two_workers_share_port_audit_and_limits(server: Server) -> None:
    issuer = DevIssuer.load_or_create(server.data_dir.keys_dir)
    run = uuid.uuid4().hex[:8]  # fresh Redis buckets for this run
    sent: list[str] = []
    errors: list[str] = []
    served: set[int] = set()
    rounds = 0
    # The kernel hands a shared listening socket's connections to whichever worker wakes first, so on a loaded
    # machine one burst can land on one worker. Bursts repeat (at most ROUNDS) until both have served MCP calls.
    while served != set(server.workers) and rounds < ROUNDS:
        tokens = [
            issuer.mint(
                scope="user/*.rs", audience=server.url, subject=f"worker-test-{run}-{rounds}-{i}", client_id=f"wt-{run}"
            )
            for i in range(CLIENTS)
        ]
        served |= await _round(server, tokens, sent, errors)
        rounds += 1
        assert errors == []
    assert served == set(server.workers), f"only {len(served)} of 2 workers served MCP calls in {rounds} bursts"

    server.proc.terminate()
    server.proc.wait(timeout=20)
    out = subprocess.run(
        [str(FHIRGATE), "audit", "verify", "--data", str(server.data_dir.path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    checked = int(re.search(r"(\d+) records verified", out.stdout)[1])  # type: ignore[index]
    assert checked == len(sent)
    with AuditLog(server.data_dir.audit_path, chain_key=server.data_dir.secret("audit-chain")) as audit:
        records = [e.record for e in audit.iter(since_seq=0)]
    calls = [r for r in records if r.method == "tools/call"]
    assert len(calls) == rounds * CLIENTS * CALLS_PER_CLIENT
    assert {r.outcome for r in calls} == {"success"}
    assert len({r.request_id for r in records}) == len(records)
