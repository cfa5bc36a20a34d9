"""Every upstream failure becomes a clear tool error, with no upstream text, and leaves one audit record."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from fake_upstream import FakeUpstream, outcome
from remote_support import USER, call_counted

from fhirgate.core.fhir.search import parse_search
from fhirgate.errors import RateLimited, StoreError
from fhirgate.remote.errors import UpstreamAuthFailed, UpstreamRateLimited, UpstreamRefused
from fhirgate.service.gateway import Gateway
from fhirgate.store.remote import RemoteStoreError, translate

SECRET = "Zebediah Quux"
SEARCH = {"resource_type": "Observation", "params": {"subject": "Patient/pat-000000"}, "count": 5}


def _bundle(entries: list[dict[str, Any]], **extra: Any) -> httpx.Response:
    body = {"resourceType": "Bundle", "type": "searchset", "entry": entries, **extra}
    return httpx.Response(200, content=orjson.dumps(body), headers={"Content-Type": "application/fhir+json"})


def _timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


FAILURES: dict[str, tuple[Callable[[httpx.Request], httpx.Response], str]] = {
    "outcome-400": (lambda r: outcome(400), "upstream-refused: the upstream FHIR server refused the request (HTTP 400"),
    "outcome-500": (lambda r: outcome(500, "exception"), "issue codes: exception"),
    "plain-502": (lambda r: httpx.Response(502, text=f"<html>{SECRET}</html>"), "failed (HTTP 502)"),
    "unauthorized": (lambda r: outcome(401, "login"), "refused fhirgate's credentials (HTTP 401"),
    "forbidden": (lambda r: outcome(403, "forbidden"), "does not allow fhirgate's client this request (HTTP 403)"),
    "rate-limited": (
        lambda r: httpx.Response(429, headers={"Retry-After": "30"}, text=SECRET),
        "the upstream FHIR server is rate limiting; retry after 30 s",
    ),
    "timeout": (_timeout, "upstream timeout"),
    "not-json": (lambda r: httpx.Response(200, text=SECRET), "upstream returned a malformed answer"),
    "malformed-bundle": (lambda r: _bundle([], type="collection"), "not a searchset Bundle"),
    "wrong-type": (
        lambda r: _bundle([{"resource": {"resourceType": "Patient", "id": "x", "name": [{"text": SECRET}]}}]),
        "a matched entry is not of the searched type",
    ),
}


@pytest.mark.parametrize("name", sorted(FAILURES))
async def test_upstream_failure_is_a_clear_audited_tool_error(
    remote_gateway: tuple[Gateway, FakeUpstream], name: str
) -> None:
    gateway, fake = remote_gateway
    handler, expected = FAILURES[name]
    fake.failures["/Observation"] = handler
    result, audited = await call_counted(gateway, USER, "search_resources", SEARCH)
    assert result.is_error
    text = result.content[0].text
    assert expected in text, text
    assert SECRET not in text and "Traceback" not in text and "diagnostics" not in text
    assert audited == 1
    record = gateway.audit_sink.tail(1)[0].record  # type: ignore[attr-defined]
    assert record.outcome in ("error", "denied")
    if name == "rate-limited":
        assert result.meta["retry_after_seconds"] == 30.0


async def test_foreign_next_link_is_refused(remote_gateway: tuple[Gateway, FakeUpstream]) -> None:
    gateway, fake = remote_gateway
    gateway.store._paging = "links"  # type: ignore[attr-defined]
    page = fake.store.search(parse_search("Observation", []))
    entries = [{"resource": s.body, "search": {"mode": "match"}} for s in page.matches[:5]]
    foreign = [{"relation": "next", "url": "https://evil.example.com/r4?_page=1"}]
    fake.failures["/Observation"] = lambda r: _bundle(entries, link=foreign)
    first, _ = await call_counted(gateway, USER, "search_resources", {"resource_type": "Observation", "count": 5})
    assert not first.is_error, first.content
    cursor = first.structured_content["page"]["next_cursor"]
    assert cursor
    args = {"resource_type": "Observation", "count": 5, "cursor": cursor}
    second, audited = await call_counted(gateway, USER, "search_resources", args)
    assert second.is_error and "points outside the configured server" in second.content[0].text
    assert "evil.example.com" not in second.content[0].text
    assert audited == 1
    assert not any(r.url.host == "evil.example.com" for r in fake.requests)


def test_translate_keeps_codes_and_kinds() -> None:
    throttled = translate(UpstreamRateLimited("x", host="h", interaction="search", retry_after=None))
    assert isinstance(throttled, RateLimited) and "retry later" in throttled.message
    refused = translate(UpstreamRefused("the server refused", host="h", interaction="read", status=404))
    assert isinstance(refused, RemoteStoreError) and isinstance(refused, StoreError)
    assert refused.code == "upstream-refused"
    auth = translate(UpstreamAuthFailed("token: invalid_client", host="auth", interaction="token"))
    assert "the token request failed" in auth.message
