"""Bundle preparation: ids, urn:uuid rewriting, conditional references and creates, methods, entry errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from fhirgate.core.fhir.bundle import parse_query, prepare_bundle
from fhirgate.errors import InvalidInput, ValidationFailed

P_UUID = "53917de0-aa0c-0700-105a-4f7f893c62f6"
E_UUID = "11111111-2222-3333-4444-555555555555"
NPI = "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999"


def _txn(*entries: dict[str, Any], btype: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": btype, "entry": list(entries)}


def _post(rtype: str, uid: str | None, resource: dict[str, Any], **request: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": {"resourceType": rtype, **resource},
        "request": {"method": "POST", "url": rtype, **request},
    }
    if uid:
        entry["fullUrl"] = f"urn:uuid:{uid}"
    return entry


def _resolver(table: Mapping[tuple[str, str], list[str]]) -> Any:
    calls: list[tuple[str, dict[str, str]]] = []

    def resolve(rtype: str, params: Mapping[str, str]) -> list[str]:
        calls.append((rtype, dict(params)))
        return table.get((rtype, params.get("identifier", "")), [])

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


def _synthea_like() -> dict[str, Any]:
    return _txn(
        _post("Patient", P_UUID, {"id": P_UUID}),
        _post(
            "Encounter",
            E_UUID,
            {
                "subject": {"reference": f"urn:uuid:{P_UUID}"},
                "participant": [{"individual": {"reference": NPI}}],
                "contained": [{"resourceType": "Coverage", "beneficiary": {"reference": f"urn:uuid:{P_UUID}"}}],
            },
        ),
        _post("Observation", None, {"encounter": {"reference": f"urn:uuid:{E_UUID}"}}),
    )


def test_urn_uuid_references_rewritten_and_ids_kept() -> None:
    resolve = _resolver({("Practitioner", "http://hl7.org/fhir/sid/us-npi|9999"): ["pr-7"]})
    out = prepare_bundle(_synthea_like(), resolve=resolve, make_id=lambda: "fresh")
    assert out.atomic
    assert not out.errors
    pat, enc, obs = out.entries
    assert (pat.id, enc.id, obs.id) == (P_UUID, E_UUID, "fresh")
    assert enc.resource is not None
    assert obs.resource is not None
    assert enc.resource["id"] == E_UUID
    assert enc.resource["subject"]["reference"] == f"Patient/{P_UUID}"
    assert enc.resource["contained"][0]["beneficiary"]["reference"] == f"Patient/{P_UUID}"
    assert enc.resource["participant"][0]["individual"]["reference"] == "Practitioner/pr-7"
    assert obs.resource["encounter"]["reference"] == f"Encounter/{E_UUID}"
    assert sorted(enc.references) == sorted([f"Patient/{P_UUID}", f"Patient/{P_UUID}", "Practitioner/pr-7"])
    assert "urn:uuid" not in str([e.resource for e in out.entries])


def test_conditional_reference_resolved_once_per_bundle() -> None:
    bundle = _synthea_like()
    bundle["entry"].append(_post("Procedure", None, {"performer": [{"actor": {"reference": NPI}}]}))
    resolve = _resolver({("Practitioner", "http://hl7.org/fhir/sid/us-npi|9999"): ["pr-7"]})
    prepare_bundle(bundle, resolve=resolve)
    assert len(resolve.calls) == 1
    assert resolve.calls[0] == ("Practitioner", {"identifier": "http://hl7.org/fhir/sid/us-npi|9999"})


@pytest.mark.parametrize(("ids", "text"), [([], "matches no stored resource"), (["a", "b"], "matches 2")])
def test_conditional_reference_unresolvable_names_entry(ids: list[str], text: str) -> None:
    resolve = _resolver({("Practitioner", "http://hl7.org/fhir/sid/us-npi|9999"): ids})
    with pytest.raises(ValidationFailed) as info:
        prepare_bundle(_synthea_like(), resolve=resolve)
    assert text in info.value.message
    assert info.value.location is not None
    assert info.value.location.startswith("entry[1]")


def test_conditional_reference_without_resolver() -> None:
    with pytest.raises(ValidationFailed, match="cannot be resolved"):
        prepare_bundle(_synthea_like())


def test_resolver_errors_become_validation_errors() -> None:
    def resolve(rtype: str, params: Mapping[str, str]) -> list[str]:
        raise InvalidInput("identifier", "bad token")

    with pytest.raises(ValidationFailed, match="conditional query rejected"):
        prepare_bundle(_synthea_like(), resolve=resolve)


def test_dangling_urn_uuid_rejected() -> None:
    bundle = _txn(_post("Observation", None, {"subject": {"reference": f"urn:uuid:{E_UUID}"}}))
    with pytest.raises(ValidationFailed) as info:
        prepare_bundle(bundle)
    assert info.value.location == "entry[0]"
    assert "matches no fullUrl" in info.value.message


def test_if_none_exist_match_skips_and_maps_references() -> None:
    org_uuid = "22222222-2222-3333-4444-555555555555"
    bundle = _txn(
        _post("Organization", org_uuid, {}, ifNoneExist="identifier=https://x|1"),
        _post("Location", None, {"managingOrganization": {"reference": f"urn:uuid:{org_uuid}"}}),
        btype="batch",
    )
    out = prepare_bundle(bundle, resolve=_resolver({("Organization", "https://x|1"): ["org-old"]}))
    org, loc = out.entries
    assert org.exists
    assert org.id == "org-old"
    assert loc.resource is not None
    assert loc.resource["managingOrganization"]["reference"] == "Organization/org-old"


def test_if_none_exist_multiple_matches_is_an_error() -> None:
    bundle = _txn(_post("Organization", None, {}, ifNoneExist="identifier=https://x|1"))
    with pytest.raises(ValidationFailed, match="more than one"):
        prepare_bundle(bundle, resolve=_resolver({("Organization", "https://x|1"): ["a", "b"]}))


def test_put_delete_and_unsupported_methods() -> None:
    bundle = _txn(
        {"resource": {"resourceType": "Patient", "id": "p9"}, "request": {"method": "PUT", "url": "Patient/p9"}},
        {"request": {"method": "DELETE", "url": "Observation/o1"}},
    )
    put, delete = prepare_bundle(bundle).entries
    assert (put.method, put.id, delete.method, delete.resource_type, delete.id) == (
        "PUT",
        "p9",
        "DELETE",
        "Observation",
        "o1",
    )
    for request, text in [
        ({"method": "GET", "url": "Patient/p9"}, "request.method"),
        ({"method": "PUT", "url": "Patient/other"}, "does not match"),
        ({"method": "PUT", "url": "Patient?identifier=a|b"}, "conditional update"),
        ({"method": "POST", "url": "Observation"}, "must be the resource type"),
        ({"method": "POST"}, "request.url is required"),
    ]:
        entry = {"resource": {"resourceType": "Patient", "id": "p9"}, "request": request}
        with pytest.raises(ValidationFailed, match=text) as info:
            prepare_bundle(
                _txn({"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}, entry)
            )
        assert info.value.location is not None
        assert info.value.location.startswith("entry[1]")


def test_batch_collects_errors_per_entry() -> None:
    bundle = _txn(
        _post("Patient", P_UUID, {}),
        {"resource": "nope", "request": {"method": "POST", "url": "Patient"}},
        _post("Observation", None, {"subject": {"reference": "urn:uuid:00000000-0000-0000-0000-000000000000"}}),
        btype="batch",
    )
    out = prepare_bundle(bundle)
    assert [e.index for e in out.entries] == [0]
    assert [i for i, _ in out.errors] == [1, 2]


def test_collection_keeps_ids_and_accept_skips() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:" + P_UUID, "resource": {"resourceType": "Patient", "id": "keep-me"}},
            {"resource": {"resourceType": "Device", "id": "d1"}},
            {"resource": {"resourceType": "Observation", "device": {"reference": "Device/d1"}}},
        ],
    }
    out = prepare_bundle(bundle, accept=lambda t: t != "Device", make_id=lambda: "new1")
    assert [e.id for e in out.entries] == [P_UUID, "new1"]
    assert out.skipped == {"Device": 1}


def test_duplicate_entries_rejected() -> None:
    put = {"resource": {"resourceType": "Patient", "id": "p9"}, "request": {"method": "PUT", "url": "Patient/p9"}}
    with pytest.raises(ValidationFailed, match="appears twice"):
        prepare_bundle(_txn(put, put))


@pytest.mark.parametrize(
    "bundle",
    [
        {"resourceType": "Bundle", "type": "history", "entry": []},
        {"resourceType": "Bundle", "type": "transaction", "entry": {}},
        {"resourceType": "Patient"},
        [],
    ],
)
def test_malformed_bundles(bundle: Any) -> None:
    with pytest.raises(ValidationFailed):
        prepare_bundle(bundle)


def test_parse_query() -> None:
    assert parse_query("identifier=http://x|1&name=a", location="q") == {"identifier": "http://x|1", "name": "a"}
    for bad in ("identifier", "a=1&a=2", "=x"):
        with pytest.raises(ValidationFailed):
            parse_query(bad, location="q")
