"""Load test: many concurrent MCP clients against `fhirgate serve --http --workers N` for a fixed time.

Starts the server itself as a subprocess (uvicorn multi-process mode, rate limits in Redis), waits for
/healthz, then runs `--clients` real MCP SDK Streamable HTTP client sessions, each with its own token,
looping over a mix of read tools (find_patients, patient_summary, search_resources, read_resource,
patient_everything, grep_record, run_report) on random patients for `--seconds`. Afterwards it stops the
server, runs `fhirgate audit verify` and checks that the audit log grew by exactly one record per HTTP
request the clients sent. Reports calls, errors by kind, calls/s and p50/p95/p99 per tool and overall,
and writes a JSON result file.

The policy is the default one with rate limits raised out of the way (capacity and refill 100,000) and
`[rate_limits] redis_url` set: the benchmark measures throughput, not the limits, but the buckets are
still taken in Redis on every call, as in production. `--data` is passed through to every command
unchanged, so a directory or (where the CLI supports it) a postgresql:// URL both work.

    python benchmarks/load_workers.py --patients 1000                  # a fresh demo in a temp dir
    python benchmarks/load_workers.py --clients 50 --seconds 60 --workers 2 --data DIR-or-URL
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import httpx2
from bench_policy import unlimited_text
from mcp.client.streamable_http import streamable_http_client
from tool_latency import _free_port, _pct

from fhirgate.location import open_location
from mcp import Client

FHIRGATE = Path(sys.executable).with_name("fhirgate")
RESULTS = Path(__file__).with_name("results") / "load_workers.json"
# (tool, weight): reads dominate, as in a clinician's session; the heavier tools are rarer.
MIX = (
    ("find_patients", 15),
    ("patient_summary", 20),
    ("search_resources", 20),
    ("read_resource", 20),
    ("patient_everything", 10),
    ("grep_record", 8),
    ("run_report", 7),
)
REPORTS = ("service_volume", "provider_utilization", "cancellations", "no_show_summary", "new_vs_returning_patients")
SEARCH_TYPES = ("Observation", "Condition", "Encounter", "MedicationRequest", "Appointment")
WORDS = ("pain", "blood", "follow", "pressure", "diabetes", "cough")


def fhirgate(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the fhirgate CLI; exits with its stderr when `check` and it fails."""
    out = subprocess.run([str(FHIRGATE), *args], capture_output=True, text=True, timeout=3600, check=False)
    if check and out.returncode != 0:
        raise SystemExit(f"fhirgate {' '.join(args[:2])} failed:\n{out.stderr}")
    return out


def audit_verify(data: str) -> tuple[bool, int, str]:
    """(chain OK, records verified, the command's message) from `fhirgate audit verify`."""
    out = fhirgate("audit", "verify", "--data", data, check=False)
    text = (out.stdout + out.stderr).strip()
    if "no audit log" in text:  # a fresh location: nothing appended yet
        return True, 0, text
    found = re.search(r"(\d+) records? verified|in (\d+) records", text)
    count = int(next(g for g in found.groups() if g)) if found else 0
    return out.returncode == 0, count, text.splitlines()[0] if text else ""


def arguments(tool: str, ids: list[str], rng: random.Random) -> dict[str, Any]:
    """Arguments for one call of `tool` on a random patient."""
    pid = rng.choice(ids)
    if tool == "find_patients":
        return rng.choice([{"name": rng.choice("abcdeghjklmrst"), "count": 10}, {"gender": "female", "count": 10}])
    if tool == "patient_summary":
        return {"patient_id": pid}
    if tool == "search_resources":
        return {"resource_type": rng.choice(SEARCH_TYPES), "params": {"patient": pid}, "count": 10}
    if tool == "read_resource":
        return {"resource_type": "Patient", "id": pid}
    if tool == "patient_everything":
        return {"patient_id": pid, "count": 20}
    if tool == "grep_record":
        return {"patient_id": pid, "pattern": rng.choice(WORDS), "max_hits": 10}
    return {"name": rng.choice(REPORTS)}


class Load:
    """Shared counters for every client: timings per tool, error kinds, HTTP requests sent."""

    def __init__(
        self, url: str, tokens: list[str], ids: list[str], start: float, warm_until: float, end: float
    ) -> None:
        self.url, self.tokens, self.ids = url, tokens, ids
        self.start, self.warm_until, self.end = start, warm_until, end
        self.timings: dict[str, list[float]] = {tool: [] for tool, _ in MIX}
        self.errors: Counter[str] = Counter()
        self.requests = 0
        self.calls = 0

    async def client(self, n: int) -> None:
        """One MCP session looping over the tool mix until the end time."""
        rng = random.Random(n)

        async def count(request: Any) -> None:
            self.requests += 1

        headers = {"Authorization": f"Bearer {self.tokens[n]}"}
        http = httpx2.AsyncClient(headers=headers, timeout=60, event_hooks={"request": [count]})
        async with http, Client(streamable_http_client(self.url, http_client=http)) as session:
            # Only the tools this server lists (on PostgreSQL or a remote backend run_report is not offered).
            listed = {t.name for t in (await session.list_tools()).tools}
            offered = [(tool, weight) for tool, weight in MIX if tool in listed]
            tools, weights = zip(*offered, strict=True)
            while (now := time.perf_counter()) < self.end:
                tool = rng.choices(tools, weights)[0]
                try:
                    result = await session.call_tool(tool, arguments(tool, self.ids, rng))
                    kind = None
                    if result.is_error:
                        text = getattr(result.content[0], "text", "") if result.content else ""
                        kind = f"{tool}: {text[:80]}"
                except Exception as exc:
                    kind = f"{tool}: {type(exc).__name__}"
                self.calls += 1
                if kind is not None:
                    self.errors[kind] += 1
                elif now >= self.warm_until:
                    self.timings[tool].append((time.perf_counter() - now) * 1000)


async def patient_ids(url: str, token: str, limit: int = 1000) -> tuple[list[str], int]:
    """Up to `limit` patient ids paged through find_patients (clients pick from these), and requests sent."""
    ids: list[str] = []
    sent = 0

    async def count(request: Any) -> None:
        nonlocal sent
        sent += 1

    headers = {"Authorization": f"Bearer {token}"}
    http = httpx2.AsyncClient(headers=headers, timeout=60, event_hooks={"request": [count]})
    async with http, Client(streamable_http_client(url, http_client=http)) as session:
        cursor = None
        while len(ids) < limit:
            args: dict[str, Any] = {"count": 50} | ({"cursor": cursor} if cursor else {})
            page = (await session.call_tool("find_patients", args)).structured_content or {}
            ids += [p["id"] for p in page.get("patients", [])]
            cursor = page.get("next_cursor")
            if not cursor:
                break
    if not ids:
        raise SystemExit("find_patients returned no patients: is the data location populated?")
    return ids, sent


def start_server(data: str, port: int, workers: int, policy: Path, log: Path) -> subprocess.Popen[bytes]:
    """`fhirgate serve --http --workers N` in the background until /healthz answers."""
    cmd = ["serve", "--data", data, "--http", f"127.0.0.1:{port}", "--workers", str(workers), "--policy", str(policy)]
    proc = subprocess.Popen([str(FHIRGATE), *cmd], stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited ({proc.returncode}):\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    proc.terminate()
    raise SystemExit("server did not answer /healthz within 180 s")


def summarize(timings: list[float]) -> dict[str, float]:
    if not timings:
        return {"calls": 0}
    return {
        "calls": len(timings),
        "p50_ms": round(_pct(timings, 0.50), 2),
        "p95_ms": round(_pct(timings, 0.95), 2),
        "p99_ms": round(_pct(timings, 0.99), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="data directory or postgresql:// URL (default: a fresh demo in a temp dir)")
    parser.add_argument("--patients", type=int, default=1000, help="demo size when generating (default 1000)")
    parser.add_argument("--generate", action="store_true", help="run `fhirgate demo-data` on --data first")
    parser.add_argument("--clients", type=int, default=50, help="concurrent MCP sessions (default 50)")
    parser.add_argument("--seconds", type=float, default=60, help="measured duration (default 60)")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of load not measured first (default 5)")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes (default 2)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL for the shared limits")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"result file (default {RESULTS})")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="fhirgate-load-"))
    data = args.data or str(scratch / "data")
    if args.generate or args.data is None or (Path(data).is_dir() and not (Path(data) / "store.db").exists()):
        print(f"generating a {args.patients}-patient demo in {data} ...", file=sys.stderr)
        fhirgate("demo-data", "--data", data, "--patients", str(args.patients), "--no-progress")
    location = open_location(data)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    location.update_settings("server", {"resource_url": url})
    location.update_settings("auth", {"trust_dev_issuer": True})
    policy = scratch / "load-policy.toml"
    text, n = re.subn(r"(?m)^# redis_url = .*$", f'redis_url = "{args.redis}"', unlimited_text(), count=1)
    assert n == 1, "the default policy no longer carries the commented redis_url line"
    policy.write_text(text, encoding="utf-8")
    print("policy: the default with rate limits raised to 100,000 tokens (refill 100,000/s), buckets in Redis")

    run = uuid.uuid4().hex[:8]
    issuer = location.dev_issuer()
    tokens = [
        issuer.mint(scope="user/*.rs", audience=url, subject=f"load-{run}-{i}", client_id=f"load-{run}-{i}")
        for i in range(args.clients)
    ]
    ok_before, before, _ = audit_verify(data)
    log = scratch / "serve.log"
    load_before = os.getloadavg()[0]
    server_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = time.process_time()
    proc = start_server(data, port, args.workers, policy, log)
    try:
        ids, id_requests = asyncio.run(patient_ids(url, tokens[0]))
        start = time.perf_counter()
        load = Load(url, tokens, ids, start, start + args.warmup, start + args.warmup + args.seconds)
        asyncio.run(_run(load, args.clients))
        elapsed = time.perf_counter() - load.warm_until
    finally:
        client_cpu = time.process_time() - client_cpu
        load_after = os.getloadavg()[0]
        proc.terminate()
        proc.wait(timeout=60)
    used = resource.getrusage(resource.RUSAGE_CHILDREN)  # the server and its (joined) workers
    server_cpu_s = used.ru_utime + used.ru_stime - server_cpu.ru_utime - server_cpu.ru_stime
    ok, after, message = audit_verify(data)
    measured = [t for tool in load.timings.values() for t in tool]
    result = {
        "data": location.name,
        "workers": args.workers,
        "clients": args.clients,
        "seconds": args.seconds,
        "warmup_s": args.warmup,
        "patients_sampled": len(ids),
        "calls_total": load.calls,
        "calls_measured": len(measured),
        "errors": sum(load.errors.values()),
        "error_kinds": dict(load.errors.most_common()),
        "throughput_calls_per_s": round(len(measured) / elapsed, 1),
        "overall": summarize(measured),
        "per_tool": {tool: summarize(values) for tool, values in load.timings.items()},
        "http_requests_by_clients": load.requests,
        "cpu_s": {"server_all_workers": round(server_cpu_s, 1), "clients": round(client_cpu, 1)},
        "load_average_1m": {"before": round(load_before, 2), "after": round(load_after, 2)},
        "cores": os.cpu_count(),
        "audit_verify_ok": ok and ok_before,
        "audit_verify": message,
        "audit_records_added": after - before,
        "audit_records_for_setup": id_requests,
        "audit_matches_requests": after - before == load.requests + id_requests,
    }
    report(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")
    return 0 if result["errors"] == 0 and result["audit_verify_ok"] and result["audit_matches_requests"] else 1


async def _run(load: Load, clients: int) -> None:
    await asyncio.gather(*(load.client(i) for i in range(clients)))


def report(r: dict[str, Any]) -> None:
    print(f"data: {r['data']}  workers: {r['workers']}  clients: {r['clients']}  measured: {r['seconds']} s")
    print(f"calls: {r['calls_total']} ({r['calls_measured']} measured)  errors: {r['errors']}")
    for kind, n in r["error_kinds"].items():
        print(f"  {n:>6}  {kind}")
    print(f"throughput: {r['throughput_calls_per_s']} calls/s")
    cpu, la = r["cpu_s"], r["load_average_1m"]
    print(
        f"cpu seconds: server {cpu['server_all_workers']}, clients {cpu['clients']} on {r['cores']} cores "
        f"(server start to stop; load average {la['before']} before, {la['after']} after: other work included)"
    )
    print(f"{'tool':<20}{'calls':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for tool, s in [*r["per_tool"].items(), ("overall", r["overall"])]:
        if s["calls"]:
            print(f"{tool:<20}{s['calls']:>8}{s['p50_ms']:>9.1f}{s['p95_ms']:>9.1f}{s['p99_ms']:>9.1f}")
    print(
        f"audit verify: {'OK' if r['audit_verify_ok'] else 'FAILED'} ({r['audit_verify']}); records added "
        f"{r['audit_records_added']} = {r['http_requests_by_clients']} client requests + "
        f"{r['audit_records_for_setup']} for the patient-id lookup: "
        f"{'match' if r['audit_matches_requests'] else 'MISMATCH'}"
    )


if __name__ == "__main__":
    sys.exit(main())
