"""FhirClient.vread and .history (FHIR R4 §3.1.0.3, §3.1.0.4): validated answers, 404 as None, paging fenced."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from fhirgate.errors import InvalidInput
from fhirgate.remote import FhirClient, StaticTokenAuth, UpstreamMalformed

BASE = "https://fhir.example.org/r4"


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture
def client() -> Iterator[FhirClient]:
    with FhirClient(BASE, StaticTokenAuth("static-token"), sleep=lambda s: None) as c:
        yield c


def version(vid: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", "meta": {"versionId": vid}}


def history(*entries: dict[str, Any], next_url: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Bundle", "type": "history", "entry": list(entries)}
    if next_url:
        body["link"] = [{"relation": "next", "url": next_url}]
    return body


def test_vread(mock: respx.MockRouter, client: FhirClient) -> None:
    mock.get(f"{BASE}/Patient/p1/_history/2").respond(json=version("2"))
    mock.get(f"{BASE}/Patient/p1/_history/9").respond(404)
    mock.get(f"{BASE}/Patient/p1/_history/3").respond(json={"resourceType": "Patient", "id": "other"})
    assert client.vread("Patient", "p1", "2") == version("2")
    assert client.vread("Patient", "p1", "9") is None
    with pytest.raises(UpstreamMalformed, match="not the requested resource"):
        client.vread("Patient", "p1", "3")
    with pytest.raises(InvalidInput, match="version_id"):
        client.vread("Patient", "p1", "../x")


def test_history_pages_and_deletions(mock: respx.MockRouter, client: FhirClient) -> None:
    deleted = {"request": {"method": "DELETE", "url": "Patient/p1"}}
    mock.get(f"{BASE}/Patient/p1/_history").respond(
        json=history({"resource": version("3")}, deleted, next_url=f"{BASE}?_page=2")
    )
    mock.get(f"{BASE}?_page=2").respond(json=history({"resource": version("1")}))
    first = client.history("Patient", "p1")
    assert first is not None and len(first["entry"]) == 2
    second = client.next_page(first, bundle_type="history")
    assert second is not None and second["entry"][0]["resource"]["meta"]["versionId"] == "1"
    assert client.next_page(second, bundle_type="history") is None


def test_history_absent_and_malformed(mock: respx.MockRouter, client: FhirClient) -> None:
    mock.get(f"{BASE}/Patient/gone/_history").respond(410)
    mock.get(f"{BASE}/Patient/p2/_history").respond(json={"resourceType": "Bundle", "type": "searchset", "entry": []})
    mock.get(f"{BASE}/Patient/p3/_history").mock(
        return_value=httpx.Response(200, json=history({"resource": {"resourceType": "Patient"}}))
    )
    assert client.history("Patient", "gone") is None
    with pytest.raises(UpstreamMalformed, match="not a history Bundle"):
        client.history("Patient", "p2")
    with pytest.raises(UpstreamMalformed, match="has no id"):
        client.history("Patient", "p3")
