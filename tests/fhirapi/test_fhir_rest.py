"""The FHIR REST interactions end to end: metadata, read, vread, history, search and $everything with paging,
errors as OperationOutcomes with the right status, FHIR R4(B) validity, and one audit record per request."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhirapi_support import FHIR_JSON, Api


def _outcome(resp: Any, status: int) -> dict[str, Any]:
    """The response's OperationOutcome, checked valid, after checking status and media type."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(FHIR_JSON)
    body: dict[str, Any] = resp.json()
    OperationOutcome.model_validate(body)
    assert "Traceback" not in resp.text
    return body


def _pages(api: Api, url: str, token: str) -> list[dict[str, Any]]:
    """Every Bundle reached by following next links from `url`."""
    out: list[dict[str, Any]] = []
    while url:
        resp = api.get(url, token)
        assert resp.status_code == 200, resp.text
        bundle = resp.json()
        Bundle.model_validate(bundle)
        out.append(bundle)
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), "")
        assert len(out) < 50
    return out


def test_metadata_is_public_valid_and_audited(api: Api) -> None:
    before = api.count()
    resp = api.get("metadata")
    assert resp.status_code == 200
    cap = resp.json()
    CapabilityStatement.model_validate(cap)
    assert (cap["kind"], cap["fhirVersion"], cap["rest"][0]["mode"]) == ("instance", "4.0.1", "server")
    assert "json" in cap["format"]
    security = cap["rest"][0]["security"]["service"][0]["coding"][0]
    assert security["code"] == "SMART-on-FHIR"
    patient = next(r for r in cap["rest"][0]["resource"] if r["type"] == "Patient")
    codes = {i["code"] for i in patient["interaction"]}
    assert {"read", "vread", "search-type", "history-instance"} <= codes
    assert "create" not in codes  # writes are off on this server
    assert patient["operation"][0]["name"] == "everything"
    assert {"name", "birthdate", "_id"} <= {p["name"] for p in patient["searchParam"]}
    records = api.since(before)
    assert [(r.outcome, r.reason) for r in records] == [("success", "fhir.metadata")]


def test_read_returns_the_resource_with_etag_and_one_read_record(api: Api) -> None:
    pid = api.facts.patient_a
    before = api.count()
    resp = api.get(f"Patient/{pid}", api.token())
    assert resp.status_code == 200
    body = resp.json()
    assert (body["resourceType"], body["id"]) == ("Patient", pid)
    assert resp.headers["etag"] == f'W/"{body["meta"]["versionId"]}"'
    assert "UNTRUSTED-DATA" not in resp.text  # plain FHIR JSON, no AI fences
    [rec] = api.since(before)
    assert (rec.interaction, rec.balp_kind, rec.outcome, rec.transport) == ("read", "read", "success", "http")
    assert f"Patient/{pid}" in rec.references


def test_vread_history_and_deleted(api: Api) -> None:
    token = api.token()
    ref = api.facts.versioned
    before = api.count()
    old = api.get(f"{ref}/_history/1", token)
    assert old.status_code == 200 and old.json()["meta"]["versionId"] == "1"
    new = api.get(f"{ref}/_history/2", token)
    assert new.status_code == 200 and new.json()["note"][0]["text"] == "second version"
    _outcome(api.get(f"{ref}/_history/9", token), 404)
    _outcome(api.get(f"{ref}/_history/x", token), 400)
    hist = api.get(f"{ref}/_history", token)
    assert hist.status_code == 200
    bundle = hist.json()
    Bundle.model_validate(bundle)
    assert bundle["type"] == "history"
    assert [e["response"]["etag"] for e in bundle["entry"]] == ['W/"2"', 'W/"1"']
    assert [e["request"]["method"] for e in bundle["entry"]] == ["PUT", "POST"]
    gone = _outcome(api.get(api.facts.deleted, token), 410)
    assert gone["issue"][0]["code"] == "deleted"
    deleted_history = api.get(f"{api.facts.deleted}/_history", token).json()
    assert deleted_history["entry"][0]["request"]["method"] == "DELETE"
    records = api.since(before)
    assert [r.balp_kind for r in records] == ["vread", "vread", "vread", "vread", "history", "read", "history"]


def test_search_pages_through_every_match_once(api: Api) -> None:
    token = api.token()
    pid = api.facts.patient_a
    expected = api.facts.observations[pid]
    before = api.count()
    pages = _pages(api, f"Observation?patient={pid}&_count=50", token)
    assert len(pages) == -(-expected // 50)
    assert pages[0]["total"] == expected
    ids = [e["resource"]["id"] for b in pages for e in b.get("entry", [])]
    assert len(ids) == len(set(ids)) == expected
    assert all(e["search"]["mode"] == "match" for b in pages for e in b["entry"])
    assert all(e["fullUrl"].endswith(f"/Observation/{e['resource']['id']}") for b in pages for e in b["entry"])
    records = api.since(before)
    assert len(records) == len(pages) and {r.interaction for r in records} == {"search"}


def test_post_search_and_include(api: Api) -> None:
    token = api.token()
    pid = api.facts.patient_a
    resp = api.client.post(
        "/fhir/Encounter/_search",
        content=f"patient={pid}&_include=Encounter:subject&_count=5",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status_code == 200, resp.text
    bundle = resp.json()
    Bundle.model_validate(bundle)
    modes = {e["search"]["mode"] for e in bundle["entry"]}
    assert modes == {"match", "include"}
    assert any(e["resource"]["resourceType"] == "Patient" for e in bundle["entry"] if e["search"]["mode"] == "include")


def test_everything_pages_without_duplicates(api: Api) -> None:
    pages = _pages(api, f"Patient/{api.facts.patient_a}/$everything?_count=100", api.token())
    ids = [f"{e['resource']['resourceType']}/{e['resource']['id']}" for b in pages for e in b.get("entry", [])]
    assert len(ids) == len(set(ids)) and ids[0] == f"Patient/{api.facts.patient_a}"
    typed = _pages(api, f"Patient/{api.facts.patient_a}/$everything?_type=Condition", api.token())
    assert {e["resource"]["resourceType"] for b in typed for e in b.get("entry", [])} == {"Condition"}


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("Observation?foo=1", "foo"),
        ("Observation?code:nonsense=1", "code:nonsense"),
        ("Observation?_count=1000", "_count"),
        ("Observation?_offset=20", "_offset"),
        ("Observation?_cursor=forged", "_cursor"),
        ("Observation?_sort=nosuch", "_sort"),
        ("Patient/pat-000001/$everything?start=2020", "start"),
        ("Patient/pat-000001/$everything?_since=yesterday", "_since"),
    ],
)
def test_invalid_parameters_are_400_naming_the_parameter(api: Api, path: str, param: str) -> None:
    before = api.count()
    body = _outcome(api.get(path, api.token()), 400)
    issue = body["issue"][0]
    assert issue["code"] == "invalid"
    assert issue["diagnostics"].startswith(param) and issue["expression"] == [param]
    [rec] = api.since(before)
    assert rec.outcome == "invalid"


def test_cursor_is_bound_to_the_caller(api: Api) -> None:
    first = api.get(f"Observation?patient={api.facts.patient_a}&_count=5", api.token(subject="alice")).json()
    nxt = next(link["url"] for link in first["link"] if link["relation"] == "next")
    assert "_cursor" in parse_qs(urlparse(nxt).query)
    _outcome(api.get(nxt, api.token(subject="mallory")), 400)
    assert api.get(nxt, api.token(subject="alice")).status_code == 200


def test_authentication_failures_are_401_with_challenge_and_audited(api: Api) -> None:
    for token, reason in ((None, "auth.missing_token"), ("not.a.jwt", "token.malformed")):
        before = api.count()
        resp = api.get(f"Patient/{api.facts.patient_a}", token)
        body = _outcome(resp, 401)
        assert body["issue"][0]["code"] == "login"
        assert resp.headers["www-authenticate"].startswith('Bearer resource_metadata="')
        [rec] = api.since(before)
        assert (rec.outcome, rec.reason) == ("denied", reason)
    wrong_audience = api.issuer.mint(scope="user/*.rs", audience="https://elsewhere.example/mcp")
    assert 'error="invalid_token"' in api.get("Patient", wrong_audience).headers["www-authenticate"]


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("Patient", {"Accept": "application/fhir+xml"}, 406),
        ("Patient?_format=xml", {}, 406),
        ("Patient?_format=json", {"Accept": "application/fhir+xml"}, 200),
        ("Patient", {"Accept": "application/json"}, 200),
        ("Nowhere/a/b/c/d", {}, 404),
        ("Frobnicator/1", {}, 400),
        ("Patient/not$an$id", {}, 400),
        ("Patient/pat-999999", {}, 404),
    ],
)
def test_negotiation_and_routing_errors(api: Api, path: str, headers: dict[str, str], status: int) -> None:
    before = api.count()
    resp = api.get(path, api.token(), headers=headers)
    if status == 200:
        assert resp.status_code == 200
    else:
        _outcome(resp, status)
    assert len(api.since(before)) == 1


def test_unsupported_content_type_and_methods(api: Api) -> None:
    token = api.token()
    before = api.count()
    resp = api.client.post(
        "/fhir/Patient", content="<Patient/>", headers={"Authorization": f"Bearer {token}", "Content-Type": "text/xml"}
    )
    _outcome(resp, 415)
    resp = api.client.delete(f"/fhir/Patient/{api.facts.patient_a}", headers={"Authorization": f"Bearer {token}"})
    assert "never deletes" in _outcome(resp, 405)["issue"][0]["diagnostics"]
    assert resp.headers["allow"] == "GET, PUT"
    resp = api.client.post(
        "/fhir", content=b"{not json", headers={"Authorization": f"Bearer {token}", "Content-Type": FHIR_JSON}
    )
    _outcome(resp, 400)
    assert len(api.since(before)) == 3


def test_origin_not_allowed_is_refused_and_audited(api: Api) -> None:
    before = api.count()
    resp = api.get("Patient", api.token(), headers={"Origin": "https://evil.example"})
    _outcome(resp, 403)
    [rec] = api.since(before)
    assert rec.reason == "http.origin"


def test_vread_and_history_records_export_as_valid_audit_events(api: Api) -> None:
    from fhir.resources.R4B.auditevent import AuditEvent

    from fhirgate.audit.balp import to_audit_event

    token = api.token()
    api.get(f"{api.facts.versioned}/_history/1", token)
    api.get(f"{api.facts.versioned}/_history", token)
    vread, history = (to_audit_event(e) for e in api.audit.tail(2))
    for event in (vread, history):
        AuditEvent.model_validate(event)
        assert event["action"] == "R" and event["outcome"] == "0"
    assert vread["subtype"][0]["code"] == "vread" and "IHE.BasicAudit.PatientRead" in vread["meta"]["profile"][0]
    assert history["subtype"][0]["code"] == "history-instance"
    assert any(e.get("what", {}).get("reference") == api.facts.versioned for e in history["entity"])
