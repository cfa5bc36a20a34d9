"""Tool-call latency over real HTTP: uvicorn, stateless Streamable HTTP with JSON responses, MCP 2026-07-28.

Measures find_patients, read_resource and patient_summary (p50, p90, p99, calls/s) on a demo-sized
store, end to end: TCP, Origin/bearer checks (ES256 JWT verification on every request), policy, the
store, result shaping and one audit append per call. Requests are raw JSON-RPC POSTs with a keep-alive
httpx client so the numbers are the server's, not an SDK client's.

    python benchmarks/tool_latency.py                      # generates a 200-patient demo in a temp dir
    python benchmarks/tool_latency.py --data DIR --calls 500
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from bench_policy import unlimited_policy_file

from fhirgate.app import create_http_app
from fhirgate.auth.devissuer import DevIssuer
from fhirgate.config import DataDir
from fhirgate.store.factory import open_store

VERSION = "2026-07-28"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _demo(patients: int) -> DataDir:
    from fhirgate.demo.generator import write_practice

    data_dir = DataDir(Path(tempfile.mkdtemp(prefix="fhirgate-bench-"))).ensure()
    store = open_store(data_dir, key=None)
    try:
        write_practice(store, patients=patients, seed=7)
    finally:
        store.close()
    data_dir.update_settings("auth", {"trust_dev_issuer": True})
    return data_dir


def _call(http: httpx.Client, url: str, n: int, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    body = {
        "jsonrpc": "2.0",
        "id": n,
        "method": "tools/call",
        "params": {
            "name": name,
            "arguments": arguments,
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": VERSION,
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    }
    headers = {"MCP-Protocol-Version": VERSION, "Mcp-Method": "tools/call", "Mcp-Name": name}
    resp = http.post(url, content=json.dumps(body), headers=headers)
    resp.raise_for_status()
    result: dict[str, Any] = resp.json()["result"]
    if result.get("isError"):
        raise SystemExit(f"{name} failed: {result['content'][0]['text']}")
    return result


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="an existing data directory (default: generate a demo)")
    parser.add_argument("--patients", type=int, default=200, help="demo size when generating (default 200)")
    parser.add_argument("--calls", type=int, default=300, help="timed calls per tool (default 300)")
    args = parser.parse_args()

    data_dir = DataDir(args.data) if args.data else _demo(args.patients)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    data_dir.update_settings("server", {"resource_url": url})
    token = DevIssuer.load_or_create(data_dir.keys_dir).mint(scope="user/*.rs", audience=url, ttl_seconds=3600)
    server = uvicorn.Server(
        uvicorn.Config(
            create_http_app(data_dir, key=None, policy_file=str(unlimited_policy_file(data_dir.path))),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)

    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
    }
    results: dict[str, list[float]] = {}
    try:
        with httpx.Client(headers=headers, timeout=30) as http:
            found = _call(http, url, 0, "find_patients", {"count": 50})["structuredContent"]["patients"]
            ids = [p["id"] for p in found]
            cases = {
                "find_patients": lambda i: ("find_patients", {"name": "a"[: 1 + i % 1], "count": 10}),
                "read_resource": lambda i: ("read_resource", {"resource_type": "Patient", "id": ids[i % len(ids)]}),
                "patient_summary": lambda i: ("patient_summary", {"patient_id": ids[i % len(ids)]}),
            }
            n = 1
            for label, make in cases.items():
                for i in range(20):  # warm-up: caches, thread pool, SQLite pages
                    _call(http, url, n, *make(i))
                    n += 1
                timings: list[float] = []
                for i in range(args.calls):
                    name, arguments = make(i)
                    start = time.perf_counter()
                    _call(http, url, n, name, arguments)
                    timings.append((time.perf_counter() - start) * 1000)
                    n += 1
                results[label] = timings
    finally:
        server.should_exit = True
        thread.join(timeout=10)

    print(f"data: {data_dir.path}  calls per tool: {args.calls}  (sequential, one keep-alive connection)")
    print(f"{'tool':<18}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'calls/s':>10}")
    for label, timings in results.items():
        p50 = statistics.median(timings)
        print(
            f"{label:<18}{p50:>9.2f}{_pct(timings, 0.90):>9.2f}{_pct(timings, 0.99):>9.2f}"
            f"{1000 / statistics.mean(timings):>10.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
