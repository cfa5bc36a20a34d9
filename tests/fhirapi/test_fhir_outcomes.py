"""Units of the FHIR API: error statuses and OperationOutcomes (429 with Retry-After, no detail on 500), content
negotiation, the SUBSETTED security label, and paging links."""

from __future__ import annotations

from typing import Any, cast

import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome

from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.scopes import ScopeSet
from fhirgate.errors import AccessDenied, FhirgateError, InternalError, InvalidInput, NotFound, RateLimited
from fhirgate.fhirapi.bundles import page_url
from fhirgate.fhirapi.edge import acceptable
from fhirgate.fhirapi.outcomes import error_reply
from fhirgate.fhirapi.routes import FhirApi, FhirRequest
from fhirgate.service.context import RequestContext
from fhirgate.service.gateway import Gateway
from fhirgate.service.gateway_fhir import Gone, subsetted


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (InvalidInput("params.code", "bad token", "system|code"), 400, "invalid"),
        (NotFound("Patient/x was not found"), 404, "not-found"),
        (Gone("Patient/x was deleted"), 410, "deleted"),
        (AccessDenied("no", reason="scope.type"), 403, "forbidden"),
        (RateLimited("slow down", retry_after=2.2), 429, "throttled"),
        (InternalError("internal error (request 1)"), 500, "exception"),
    ],
)
def test_error_replies(exc: FhirgateError, status: int, code: str) -> None:
    reply = error_reply(exc)
    OperationOutcome.model_validate(reply.body)
    assert (reply.status, reply.body["issue"][0]["code"]) == (status, code)
    if status == 429:
        assert reply.headers["Retry-After"] == "3"
    if status == 400:
        assert reply.body["issue"][0]["expression"] == ["code"]  # the service's `params.` prefix is dropped


class _Limited:
    def fhir_read(self, ctx: RequestContext, rtype: str, id: str) -> dict[str, Any]:
        raise RateLimited("rate limit reached", retry_after=None)

    def fhir_search(self, *args: Any, **kw: Any) -> Any:
        raise ValueError("a bug with PHI: Jane Doe")


def test_handle_maps_rate_limits_and_hides_bugs() -> None:
    api = FhirApi(cast(Gateway, _Limited()), "http://h/fhir")
    ctx = RequestContext(Principal(sub="s", issuer="i", scopes=ScopeSet.parse("user/*.rs"), client_id="c"))
    limited = api.handle(ctx, FhirRequest("GET", ("Patient", "p1")))
    assert limited.status == 429 and "Retry-After" not in limited.headers
    bug = api.handle(ctx, FhirRequest("GET", ("Patient",)))
    assert bug.status == 500 and "Jane" not in str(bug.body)


@pytest.mark.parametrize(
    ("accept", "formats", "ok"),
    [
        (None, [], True),
        ("application/fhir+json", [], True),
        ("application/json; charset=utf-8", [], True),
        ("text/html, */*;q=0.1", [], True),
        ("application/fhir+xml", [], False),
        ("application/fhir+xml", ["json"], True),
        (None, ["application/fhir json"], True),
        (None, ["xml"], False),
    ],
)
def test_acceptable(accept: str | None, formats: list[str], ok: bool) -> None:
    assert acceptable(accept, formats) is ok


def test_subsetted_mirrors_the_tag_into_security_without_mutating() -> None:
    tag = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
    body = {"resourceType": "Patient", "id": "p", "meta": {"tag": [tag]}}
    out = subsetted(body)
    assert out["meta"]["security"][0]["code"] == "SUBSETTED" and "security" not in body["meta"]
    whole = {"resourceType": "Patient", "id": "p", "meta": {"versionId": "1"}}
    assert subsetted(whole) is whole


def test_page_url_replaces_the_cursor() -> None:
    url = page_url("http://h/fhir", "Patient", [("name", "a b"), ("_cursor", "old")], "new")
    assert url == "http://h/fhir/Patient?name=a+b&_cursor=new"


def test_cli_refuses_fhir_api_over_stdio(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from fhirgate.cli.main import main

    assert main(["serve", "--stdio", "--fhir-api", "--data", str(tmp_path / "none")]) != 0
    assert "--fhir-api" in capsys.readouterr().err
