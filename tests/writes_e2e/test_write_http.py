"""Write confirmation over real Streamable HTTP (uvicorn in a thread, bearer tokens from the dev issuer).

On 2026-07-28 the confirmation round trip crosses two HTTP requests: the sealed requestState must come back
and be accepted (the data directory's request-state key). On 2025-11-25 over stateless HTTP the server
cannot ask mid-call, so the proposal must stay pending — promptly, never hanging the call.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
import uvicorn
from mcp.client.context import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client
from mcp_types import ElicitRequestParams, ElicitResult
from writes_support import free_slot, practitioner_with_slots, structured

from fhirgate.app import create_http_app
from fhirgate.auth.devissuer import DevIssuer
from fhirgate.config import DataDir
from fhirgate.store.factory import open_store
from mcp import Client


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(data_dir: DataDir) -> Iterator[tuple[str, DevIssuer, DataDir]]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    data_dir.update_settings("server", {"resource_url": url})
    data_dir.update_settings("auth", {"trust_dev_issuer": True})
    issuer = DevIssuer.load_or_create(data_dir.keys_dir)
    app = create_http_app(data_dir, key=None, allow_writes=True)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield url, issuer, data_dir
    server.should_exit = True
    thread.join(timeout=10)


def _args(data_dir: DataDir, skip: int) -> dict[str, Any]:
    store = open_store(data_dir, create=False)
    try:
        doctor = practitioner_with_slots(store)
        slot = free_slot(store, doctor, skip=skip)
        patient = sorted(s.id for s in store.iter_type("Patient"))[skip]
    finally:
        store.close()
    return {"patient_id": patient, "practitioner_id": doctor, "start": slot["start"], "minutes": 30}


async def _yes(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
    return ElicitResult(action="accept", content={"confirm": True})


@pytest.mark.parametrize(("mode", "expected"), [("auto", "applied"), ("legacy", "pending")])
async def test_confirmation_over_http(served: tuple[str, DevIssuer, DataDir], mode: str, expected: str) -> None:
    url, issuer, data_dir = served
    token = issuer.mint(scope="user/*.cruds", audience=url, subject=f"http-{mode}")
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    async with http, Client(streamable_http_client(url, http_client=http), mode=mode, elicitation_callback=_yes) as c:
        result = await c.call_tool("book_appointment", _args(data_dir, 0 if mode == "auto" else 1))
    assert not result.is_error, result.content[0].text
    out = structured(result)
    assert out["proposal"]["status"] == expected
