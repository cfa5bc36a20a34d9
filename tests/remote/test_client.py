"""The upstream FHIR client: happy paths with paging, the next-link fence, and every failure mapping."""

from __future__ import annotations

from collections.abc import Iterator
from email.utils import formatdate
from typing import Any

import httpx
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fhirgate.errors import ConfigError, InvalidInput
from fhirgate.remote import (
    BackendServicesAuth,
    FhirClient,
    StaticTokenAuth,
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamForbidden,
    UpstreamMalformed,
    UpstreamRateLimited,
    UpstreamRefused,
    UpstreamUnavailable,
)

BASE = "https://fhir.example.org/r4"
TOKEN_URL = "https://auth.example.org/token"
PHI = "Zebediah Quux"
NOW = 1_800_000_000.0


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture
def client(sleeps: Sleeps) -> Iterator[FhirClient]:
    with FhirClient(BASE, StaticTokenAuth("static-token"), sleep=sleeps, clock=lambda: NOW) as c:
        yield c


def patient(pid: str = "p1") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "name": [{"text": PHI}]}


def bundle(*resources: dict[str, Any], next_url: str | None = None, **extra: Any) -> dict[str, Any]:
    links = [{"relation": "self", "url": f"{BASE}/Patient"}]
    if next_url is not None:
        links.append({"relation": "next", "url": next_url})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": [{"fullUrl": f"{BASE}/{r['resourceType']}/{r.get('id', 'x')}", "resource": r} for r in resources],
        **extra,
    }


def outcome(code: str = "invalid") -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": "error", "code": code, "diagnostics": f"Patient {PHI} born 1970-01-01 is invalid"},
            {"severity": "error", "code": f"<{PHI}>"},  # not an IssueType code: never echoed
        ],
    }


CAPS = {
    "resourceType": "CapabilityStatement",
    "status": "active",
    "kind": "instance",
    "fhirVersion": "4.0.1",
    "format": ["json"],
    "rest": [
        {
            "mode": "server",
            "resource": [
                {
                    "type": "Patient",
                    "interaction": [{"code": "read"}, {"code": "search-type"}],
                    "operation": [
                        {
                            "name": "everything",
                            "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                        }
                    ],
                },
                {"type": "Observation", "interaction": [{"code": "search-type"}]},
            ],
        }
    ],
}


# -- happy paths -------------------------------------------------------------------------------------


def test_capabilities_cached_and_supports(client: FhirClient, mock: respx.MockRouter) -> None:
    route = mock.get(f"{BASE}/metadata").mock(return_value=httpx.Response(200, json=CAPS))
    assert client.capabilities()["fhirVersion"] == "4.0.1"
    assert client.supports("Patient", "read")
    assert client.supports("Patient", "search-type")
    assert client.supports("Patient", "everything") and client.supports("Patient", "$everything")
    assert client.supports("Observation", "search-type")
    assert not client.supports("Observation", "read")
    assert not client.supports("Encounter", "read")
    assert route.call_count == 1
    client.capabilities(refresh=True)
    assert route.call_count == 2
    request = route.calls.last.request
    assert request.headers["accept"] == "application/fhir+json"
    assert request.headers["authorization"] == "Bearer static-token"


def test_capabilities_must_be_a_capability_statement(client: FhirClient, mock: respx.MockRouter) -> None:
    mock.get(f"{BASE}/metadata").mock(return_value=httpx.Response(200, json=patient()))
    with pytest.raises(UpstreamMalformed, match=r"^upstream fhir\.example\.org: metadata: the answer is not a Capab"):
        client.capabilities()


def test_read(client: FhirClient, mock: respx.MockRouter) -> None:
    mock.get(f"{BASE}/Patient/p1").mock(return_value=httpx.Response(200, json=patient()))
    assert client.read("Patient", "p1") == patient()


@pytest.mark.parametrize("status", [404, 410])
def test_read_absent_is_none(status: int, client: FhirClient, mock: respx.MockRouter) -> None:
    mock.get(f"{BASE}/Patient/gone").mock(return_value=httpx.Response(status, json=outcome("not-found")))
    assert client.read("Patient", "gone") is None


@pytest.mark.parametrize(
    "body",
    [patient("p2"), {"resourceType": "Observation", "id": "p1"}, {"id": "p1"}, [patient()], outcome()],
)
def test_read_must_return_the_requested_resource(body: Any, client: FhirClient, mock: respx.MockRouter) -> None:
    mock.get(f"{BASE}/Patient/p1").mock(return_value=httpx.Response(200, json=body))
    with pytest.raises(UpstreamMalformed) as info:
        client.read("Patient", "p1")
    assert str(info.value).startswith("upstream fhir.example.org: read Patient/p1: ")
    assert "p2" not in str(info.value) and PHI not in str(info.value)


def test_search_with_paging(client: FhirClient, mock: respx.MockRouter) -> None:
    next_url = f"{BASE}?_getpages=abc&_getpagesoffset=1&_count=1"
    # respx matches routes in order: the more specific (with query) first
    third = mock.get(f"{BASE}/Patient", params={"page": "3"}).mock(return_value=httpx.Response(200, json=bundle()))
    first = mock.get(f"{BASE}/Patient").mock(
        return_value=httpx.Response(200, json=bundle(patient("p1"), next_url=next_url, total=2))
    )
    second = mock.get(BASE, params={"_getpages": "abc", "_getpagesoffset": "1"}).mock(
        return_value=httpx.Response(200, json=bundle(patient("p2"), next_url=f"{BASE}/Patient?page=3"))
    )

    page = client.search("Patient", [("name", "Quux"), ("birthdate", "ge1970"), ("birthdate", "le1980")])
    assert [e["resource"]["id"] for e in page["entry"]] == ["p1"]
    sent = first.calls.last.request.url
    assert sent.params.multi_items() == [("name", "Quux"), ("birthdate", "ge1970"), ("birthdate", "le1980")]
    assert first.calls.last.request.headers["authorization"] == "Bearer static-token"

    page2 = client.next_page(page)
    assert page2 is not None and [e["resource"]["id"] for e in page2["entry"]] == ["p2"]
    assert second.calls.last.request.headers["authorization"] == "Bearer static-token"
    page3 = client.next_page(page2)
    assert page3 is not None and page3.get("entry", []) == [] and third.call_count == 1
    assert client.next_page(page3) is None


def test_search_allows_included_resources_and_outcomes(client: FhirClient, mock: respx.MockRouter) -> None:
    body = bundle({"resourceType": "Observation", "id": "o1"}, {"resourceType": "Patient", "id": "p1"}, next_url=None)
    body["entry"][1]["search"] = {"mode": "include"}
    body["entry"].append({"resource": outcome("informational"), "search": {"mode": "outcome"}})
    mock.get(f"{BASE}/Observation").mock(return_value=httpx.Response(200, json=body))
    assert len(client.search("Observation", [("_include", "Observation:subject")])["entry"]) == 3


def test_relative_next_link_resolves_against_base(client: FhirClient, mock: respx.MockRouter) -> None:
    route = mock.get(f"{BASE}/Patient", params={"page": "2"}).mock(return_value=httpx.Response(200, json=bundle()))
    assert client.next_page(bundle(next_url="/r4/Patient?page=2")) is not None
    assert route.call_count == 1


def test_everything_with_paging(client: FhirClient, mock: respx.MockRouter) -> None:
    obs = {"resourceType": "Observation", "id": "o1"}
    second = mock.get(f"{BASE}/Patient/p1/$everything", params={"_offset": "2"}).mock(
        return_value=httpx.Response(200, json=bundle({"resourceType": "Condition", "id": "c1"}))
    )
    first = mock.get(f"{BASE}/Patient/p1/$everything").mock(
        return_value=httpx.Response(
            200, json=bundle(patient("p1"), obs, next_url=f"{BASE}/Patient/p1/$everything?_offset=2")
        )
    )
    page = client.everything("p1", [("_count", "2"), ("_type", "Patient,Observation,Condition")])
    assert [e["resource"]["resourceType"] for e in page["entry"]] == ["Patient", "Observation"]
    assert first.calls.last.request.url.path == "/r4/Patient/p1/$everything"
    assert first.calls.last.request.url.params["_count"] == "2"
    nxt = client.next_page(page)
    assert nxt is not None and nxt["entry"][0]["resource"]["id"] == "c1" and second.call_count == 1
    assert client.next_page(nxt) is None


@pytest.mark.parametrize(
    "next_url",
    [
        "https://evil.example.net/r4/Patient?page=2",
        "http://fhir.example.org/r4/Patient?page=2",
        "https://fhir.example.org:8443/r4/Patient?page=2",
        "https://fhir.example.org/other/Patient?page=2",
        "https://fhir.example.org/r4x/Patient?page=2",
        "https://user@fhir.example.org/r4/Patient?page=2",
        "//evil.example.net/r4/Patient",
    ],
)
def test_next_link_off_the_server_is_refused(next_url: str, client: FhirClient, mock: respx.MockRouter) -> None:
    elsewhere = mock.route().mock(return_value=httpx.Response(200, json=bundle()))
    with pytest.raises(UpstreamMalformed, match="next link points outside the configured server; not followed") as info:
        client.next_page(bundle(next_url=next_url))
    assert elsewhere.call_count == 0
    assert "evil" not in str(info.value) and "page=2" not in str(info.value)


def test_backend_services_token_used_and_refreshed_after_401(mock: respx.MockRouter, sleeps: Sleeps) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    auth = BackendServicesAuth(
        client_id="fhirgate",
        private_key=pem,
        kid="k1",
        scopes="system/*.rs",
        algorithm="ES384",
        token_endpoint=TOKEN_URL,
    )
    token = mock.post(TOKEN_URL).mock(
        side_effect=[
            httpx.Response(200, json={"access_token": f"tok-{n}", "token_type": "bearer", "expires_in": 300})
            for n in (1, 2, 3)
        ]
    )
    read = mock.get(f"{BASE}/Patient/p1").mock(
        side_effect=[httpx.Response(401), httpx.Response(200, json=patient()), httpx.Response(200, json=patient())]
    )
    client = FhirClient(BASE, auth, sleep=sleeps)
    assert client.read("Patient", "p1") is not None
    assert [c.request.headers["authorization"] for c in read.calls] == ["Bearer tok-1", "Bearer tok-2"]
    assert client.read("Patient", "p1") is not None  # the refreshed token is cached
    assert token.call_count == 2
    assert read.calls.last.request.headers["authorization"] == "Bearer tok-2"


# -- failures ----------------------------------------------------------------------------------------


def _assert_clean(error: UpstreamError, *, interaction: str, target: str) -> None:
    message = str(error)
    assert message.startswith(f"upstream fhir.example.org: {interaction} {target}: "), message
    for secret in (PHI, "Quux", "1970", "diagnostics", "static-token"):
        assert secret not in message, message


@pytest.mark.parametrize(
    ("response", "error", "expected"),
    [
        (
            httpx.Response(400, json=outcome("invalid")),
            UpstreamRefused,
            "HTTP 400; OperationOutcome issue codes: invalid",
        ),
        (
            httpx.Response(422, json=outcome("processing")),
            UpstreamRefused,
            "HTTP 422; OperationOutcome issue codes: processing",
        ),
        (
            httpx.Response(500, json=outcome("exception")),
            UpstreamRefused,
            "HTTP 500; OperationOutcome issue codes: exception",
        ),
        (httpx.Response(400, text=f"bad request for {PHI}"), UpstreamRefused, "HTTP 400)"),
        (httpx.Response(500, text=f"stack trace {PHI}"), UpstreamUnavailable, "server error (HTTP 500)"),
        (httpx.Response(502, html=f"<b>{PHI}</b>"), UpstreamUnavailable, "server error (HTTP 502)"),
        (httpx.Response(503, text=PHI), UpstreamUnavailable, "server error (HTTP 503)"),
        (
            httpx.Response(403, json=outcome("forbidden")),
            UpstreamForbidden,
            "HTTP 403; OperationOutcome issue codes: forbidden",
        ),
        (httpx.Response(403, text=PHI), UpstreamForbidden, "HTTP 403)"),
        (httpx.Response(429, text=PHI), UpstreamRateLimited, "throttling requests (HTTP 429)"),
        (
            httpx.Response(302, headers={"Location": f"https://evil.example.net/?q={PHI}"}),
            UpstreamMalformed,
            "redirect",
        ),
        (httpx.Response(200, text=f"<html>{PHI}</html>"), UpstreamMalformed, "not JSON"),
        (httpx.Response(200, json=[PHI]), UpstreamMalformed, "not a FHIR resource"),
        (httpx.Response(200, json={**bundle(patient()), "type": "collection"}), UpstreamMalformed, "not a searchset"),
        (httpx.Response(200, json=patient()), UpstreamMalformed, "not a searchset"),
        (httpx.Response(200, json={**bundle(), "entry": [{"fullUrl": PHI}]}), UpstreamMalformed, "holds no resource"),
        (httpx.Response(200, json={**bundle(), "entry": {"x": PHI}}), UpstreamMalformed, "not a list"),
        (
            httpx.Response(200, json=bundle({"resourceType": "Observation", "id": "o1"})),
            UpstreamMalformed,
            "searched type",
        ),
        (httpx.Response(200, json=bundle({"resourceType": "Patient", "name": PHI})), UpstreamMalformed, "has no id"),
        (httpx.Response(200, json={**bundle(), "total": PHI}), UpstreamMalformed, "total"),
    ],
)
def test_search_failures(
    response: httpx.Response, error: type[UpstreamError], expected: str, client: FhirClient, mock: respx.MockRouter
) -> None:
    mock.get(f"{BASE}/Patient").mock(return_value=response)
    with pytest.raises(error) as info:
        client.search("Patient", [("name", "Quux"), ("birthdate", "1970-01-01")])
    assert type(info.value) is error
    assert expected in str(info.value)
    _assert_clean(info.value, interaction="search", target="Patient")
    assert info.value.host == "fhir.example.org" and info.value.interaction == "search"
    assert info.value.resource_type == "Patient"


def test_refused_carries_issue_codes(client: FhirClient, mock: respx.MockRouter) -> None:
    mock.get(f"{BASE}/Patient/p1/$everything").mock(return_value=httpx.Response(404, json=outcome("not-found")))
    with pytest.raises(UpstreamRefused) as info:
        client.everything("p1")
    assert info.value.issue_codes == ("not-found",)
    assert info.value.status == 404
    _assert_clean(info.value, interaction="everything", target="Patient/p1")


def test_401_retried_once_then_auth_failed(client: FhirClient, mock: respx.MockRouter) -> None:
    route = mock.get(f"{BASE}/Patient/p1").mock(return_value=httpx.Response(401, json=outcome("login")))
    with pytest.raises(UpstreamAuthFailed) as info:
        client.read("Patient", "p1")
    assert route.call_count == 2
    assert "HTTP 401" in str(info.value)
    _assert_clean(info.value, interaction="read", target="Patient/p1")


def test_retry_after_seconds_honoured(client: FhirClient, mock: respx.MockRouter, sleeps: Sleeps) -> None:
    route = mock.get(f"{BASE}/Patient").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "1"}),
            httpx.Response(503, headers={"Retry-After": "2"}),
            httpx.Response(200, json=bundle(patient())),
        ]
    )
    assert client.search("Patient")["entry"]
    assert sleeps.delays == [1.0, 2.0]
    assert route.call_count == 3


def test_retry_after_http_date_honoured(client: FhirClient, mock: respx.MockRouter, sleeps: Sleeps) -> None:
    mock.get(f"{BASE}/metadata").mock(
        side_effect=[
            httpx.Response(503, headers={"Retry-After": formatdate(NOW + 2, usegmt=True)}),
            httpx.Response(429, headers={"Retry-After": formatdate(NOW - 60, usegmt=True)}),  # in the past: now
            httpx.Response(200, json=CAPS),
        ]
    )
    client.capabilities()
    assert sleeps.delays == [2.0, 0.0]


def test_retry_after_beyond_cap_is_rate_limited(client: FhirClient, mock: respx.MockRouter, sleeps: Sleeps) -> None:
    mock.get(f"{BASE}/Patient/p1").mock(return_value=httpx.Response(429, headers={"Retry-After": "30"}, text=PHI))
    with pytest.raises(UpstreamRateLimited) as info:
        client.read("Patient", "p1")
    assert info.value.retry_after == 30.0
    assert "retry after 30s" in str(info.value)
    assert sleeps.delays == []
    _assert_clean(info.value, interaction="read", target="Patient/p1")


def test_retries_exhausted_is_rate_limited(mock: respx.MockRouter, sleeps: Sleeps) -> None:
    route = mock.get(f"{BASE}/Patient").mock(return_value=httpx.Response(503, headers={"Retry-After": "1"}))
    client = FhirClient(BASE, StaticTokenAuth("t"), max_retries=3, max_retry_wait=5, sleep=sleeps)
    with pytest.raises(UpstreamRateLimited) as info:
        client.search("Patient")
    assert info.value.retry_after == 1.0 and info.value.status == 503
    assert sleeps.delays == [1.0, 1.0, 1.0]
    assert route.call_count == 4


def test_429_without_retry_after(client: FhirClient, mock: respx.MockRouter, sleeps: Sleeps) -> None:
    mock.get(f"{BASE}/Patient").mock(return_value=httpx.Response(429, headers={"Retry-After": "soon"}))
    with pytest.raises(UpstreamRateLimited) as info:
        client.search("Patient")
    assert info.value.retry_after is None and sleeps.delays == []


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ReadTimeout("read timed out"), "timed out after 10s"),
        (httpx.ConnectTimeout("connect timed out"), "timed out after 10s"),
        (httpx.ConnectError(f"refused {PHI}"), "could not connect"),
    ],
)
def test_unreachable(exc: Exception, expected: str, client: FhirClient, mock: respx.MockRouter) -> None:
    mock.get(f"{BASE}/Observation").mock(side_effect=exc)
    with pytest.raises(UpstreamUnavailable) as info:
        client.search("Observation", [("code", "1234-5")])
    assert expected in str(info.value)
    assert "1234-5" not in str(info.value)
    _assert_clean(info.value, interaction="search", target="Observation")


def test_caller_input_is_checked_before_any_request(client: FhirClient, mock: respx.MockRouter) -> None:
    anything = mock.route().mock(return_value=httpx.Response(200, json=bundle()))
    with pytest.raises(InvalidInput):
        client.read("Patient", "../metadata")
    with pytest.raises(InvalidInput):
        client.read("patient", "p1")
    with pytest.raises(InvalidInput):
        client.search("Patient", [("name&x", "y")])
    with pytest.raises(InvalidInput):
        client.everything("p1/x")
    assert anything.call_count == 0


@pytest.mark.parametrize(
    "base", ["http://fhir.example.org/r4", "fhir.example.org", "https://fhir.example.org/r4?x=1", "ftp://x/r4"]
)
def test_base_url_checks(base: str) -> None:
    with pytest.raises(ConfigError):
        FhirClient(base, StaticTokenAuth("t"))


def test_errors_are_fhirgate_errors() -> None:
    from fhirgate.errors import FhirgateError

    assert issubclass(UpstreamError, FhirgateError)
    for cls in (UpstreamRefused, UpstreamAuthFailed, UpstreamForbidden, UpstreamRateLimited, UpstreamUnavailable):
        assert issubclass(cls, UpstreamError)
    assert len({c.code for c in UpstreamError.__subclasses__()}) == len(UpstreamError.__subclasses__())
