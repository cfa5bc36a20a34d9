"""The HTTP edge over a real socket (uvicorn in a thread): OAuth resource-server behaviour, Origin
checks, protected resource metadata, the SDK's Streamable HTTP client on both protocols, and audit."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import httpx2
import pytest
import uvicorn
from mcp.client.streamable_http import streamable_http_client

from fhirgate.app import create_http_app
from fhirgate.audit.log import AuditLog
from fhirgate.audit.verify import verify
from fhirgate.auth.devissuer import DevIssuer
from mcp import Client


@dataclass
class Served:
    url: str
    base: str
    issuer: DevIssuer
    audit: AuditLog

    def token(self, scope: str = "user/*.rs", **kw: Any) -> str:
        return self.issuer.mint(scope=scope, audience=kw.pop("audience", self.url), **kw)

    def count(self) -> int:
        return self.audit.count()

    def last(self) -> Any:
        return self.audit.tail(1)[0].record


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(practice: Any) -> Iterator[Served]:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    practice.data_dir.update_settings("server", {"resource_url": f"{base}/mcp"})
    issuer = DevIssuer.load_or_create(practice.data_dir.keys_dir)
    app = create_http_app(practice.data_dir, key=None)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    audit = AuditLog(practice.data_dir.audit_path, chain_key=practice.data_dir.secret("audit-chain"))
    yield Served(f"{base}/mcp", base, issuer, audit)
    server.should_exit = True
    thread.join(timeout=10)
    audit.close()


RPC = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def _post(served: Served, token: str | None = None, **headers: str) -> httpx.Response:
    h = dict(HEADERS, **headers)
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    return httpx.post(served.url, json=RPC, headers=h, timeout=10)


def test_healthz_and_metadata(served: Served) -> None:
    assert httpx.get(f"{served.base}/healthz").json() == {"status": "ok"}
    for path in ("/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"):
        doc = httpx.get(served.base + path).json()
        assert doc["resource"] == served.url
        assert doc["authorization_servers"] == [served.issuer.issuer]
        assert doc["bearer_methods_supported"] == ["header"]
        assert "patient/*.rs" in doc["scopes_supported"]


def test_no_token_is_401_with_metadata_and_scope(served: Served) -> None:
    before = served.count()
    resp = _post(served)
    assert resp.status_code == 401
    challenge = resp.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="{served.base}/.well-known/oauth-protected-resource/mcp"' in challenge
    assert 'scope="' in challenge
    assert "error=" not in challenge  # RFC 6750 §3.1: no error code without credentials
    assert served.count() == before + 1
    rec = served.last()
    assert (rec.method, rec.outcome, rec.reason, rec.transport) == ("http", "denied", "auth.missing_token", "http")


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda s: "not.a.jwt", "token.malformed"),
        (lambda s: s.token(audience="https://other.example/mcp"), "token.wrong_audience"),
        (lambda s: s.token(ttl_seconds=1)[:-4] + "AAAA", "token.bad_signature"),
    ],
)
def test_bad_tokens_are_401_invalid_token(served: Served, make: Any, reason: str) -> None:
    before = served.count()
    resp = _post(served, make(served))
    assert resp.status_code == 401
    assert 'error="invalid_token"' in resp.headers["www-authenticate"]
    assert 'scope="' in resp.headers["www-authenticate"]
    assert served.count() == before + 1
    assert served.last().reason == reason


def test_token_without_resource_scopes_is_403(served: Served) -> None:
    before = served.count()
    resp = _post(served, served.token("openid fhirUser"))
    assert resp.status_code == 403
    challenge = resp.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="' in challenge
    assert served.count() == before + 1
    assert served.last().reason == "scope.none"


def test_bad_origin_is_403_before_auth(served: Served) -> None:
    before = served.count()
    resp = _post(served, served.token(), Origin="https://evil.example")
    assert resp.status_code == 403
    resp2 = _post(served, None, Origin="https://evil.example")
    assert resp2.status_code == 403
    assert served.count() == before + 2
    assert served.last().reason == "http.origin"
    ok = _post(served, served.token(), Origin=served.base)
    assert ok.status_code == 200


def test_get_is_refused_and_audited(served: Served) -> None:
    before = served.count()
    resp = httpx.get(served.url, headers={"Authorization": f"Bearer {served.token()}", **HEADERS})
    assert resp.status_code == 405
    assert served.count() == before + 1
    assert served.last().method == "http"


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_sdk_client_over_http(served: Served, practice: Any, mode: str) -> None:
    token = served.token("patient/*.rs launch/patient", patient=practice.patient_a)
    before = served.count()
    sent: list[str] = []

    async def count_request(request: Any) -> None:
        sent.append(request.method)

    hooks = {"request": [count_request]}
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30, event_hooks=hooks)
    async with http, Client(streamable_http_client(served.url, http_client=http), mode=mode) as client:
        assert client.protocol_version == ("2026-07-28" if mode == "auto" else "2025-11-25")
        who = await client.call_tool("whoami", {})
        assert who.structured_content["patient"] == practice.patient_a  # type: ignore[index]
        read = await client.call_tool("read_resource", {"resource_type": "Patient", "id": practice.patient_b})
        assert read.is_error
        assert "not-found" in read.content[0].text
        found = await client.call_tool("search_resources", {"resource_type": "Encounter", "count": 3})
        assert not found.is_error
        assert len(found.structured_content["entries"]) == 3
    # exactly one audit record per HTTP request the client sent (POSTs, and GET/DELETE on 2025)
    assert served.count() - before == len(sent)
    records = [e.record for e in served.audit.iter(since_seq=0)][-len(sent) :]
    tool_records = [r for r in records if r.method == "tools/call"]
    assert [r.name for r in tool_records] == ["whoami", "read_resource", "search_resources"]
    assert all(r.transport == "http" and r.patient_context == practice.patient_a for r in tool_records)
    assert tool_records[1].outcome == "denied"
    # one record per HTTP request: no JSON-RPC request id appears twice
    ids = [r.request_id for r in records]
    assert len(ids) == len(set(ids))
    report = verify(served.audit)
    assert report.ok, report.problems
