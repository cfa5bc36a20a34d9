"""Boundary validation: required bindings, structure, reference syntax, unsupported types, no PHI in errors."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fhirgate.core.fhir.validate import (
    MODES,
    check_reference,
    collect_references,
    supported_types,
    validate_resource,
)
from fhirgate.errors import ValidationFailed

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "identifier": [{"use": "usual", "system": "http://example.org/mrn", "value": "MRN-77"}],
    "name": [{"use": "official", "family": "Zebedee", "given": ["Quixotica"]}],
    "gender": "female",
    "birthDate": "1970-03-04",
    "managingOrganization": {"reference": "Organization/o1"},
}

OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
    "subject": {"reference": "Patient/p1"},
    "valueQuantity": {"value": 180.0, "unit": "cm", "comparator": "<"},
    "component": [{"code": {"text": "x"}, "valueQuantity": {"value": 1, "comparator": ">="}}],
}

ENCOUNTER: dict[str, Any] = {
    "resourceType": "Encounter",
    "id": "e1",
    "status": "finished",
    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
    "statusHistory": [{"status": "arrived", "period": {"start": "2020-01-01"}}],
    "subject": {"reference": "Patient/p1"},
}


def _fail(resource: dict[str, Any], mode: str, **kw: Any) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as info:
        validate_resource(resource, mode=mode, **kw)  # type: ignore[arg-type]
    return info.value


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("resource", [PATIENT, OBSERVATION, ENCOUNTER])
def test_valid_resources_pass(mode: str, resource: dict[str, Any]) -> None:
    validate_resource(copy.deepcopy(resource), mode=mode)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", MODES)
def test_bogus_status_is_caught_in_both_modes(mode: str) -> None:
    obs = copy.deepcopy(OBSERVATION) | {"status": "bogus"}
    err = _fail(obs, mode)
    assert err.location == "Observation.status"
    assert "observation-status" in err.message
    assert "'bogus'" in err.message


@pytest.mark.parametrize(
    ("resource", "path", "value", "location"),
    [
        (ENCOUNTER, ("statusHistory", 0, "status"), "nope", "Encounter.statusHistory[0].status"),
        (PATIENT, ("identifier", 0, "use"), "primary", "Patient.identifier[0].use"),
        (PATIENT, ("name", 0, "use"), "nickname2", "Patient.name[0].use"),
        (PATIENT, ("gender",), "f", "Patient.gender"),
        (OBSERVATION, ("valueQuantity", "comparator"), "~", "Observation.valueQuantity.comparator"),
        (OBSERVATION, ("component", 0, "valueQuantity", "comparator"), "==", "Observation.component[0]"),
    ],
)
@pytest.mark.parametrize("mode", MODES)
def test_nested_required_bindings(
    mode: str, resource: dict[str, Any], path: tuple[Any, ...], value: str, location: str
) -> None:
    bad = copy.deepcopy(resource)
    node: Any = bad
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    err = _fail(bad, mode)
    assert err.location is not None
    assert err.location.startswith(location)


def test_fhir_resources_alone_misses_bindings() -> None:
    """The reason bindings.json exists: the pydantic model accepts a bogus status."""
    from fhir.resources.R4B.observation import Observation

    Observation.model_validate(copy.deepcopy(OBSERVATION) | {"status": "bogus"})


@pytest.mark.parametrize("mode", MODES)
def test_unsupported_type_lists_allowed(mode: str) -> None:
    err = _fail({"resourceType": "Device", "id": "d1"}, mode)
    assert "unsupported resourceType Device" in err.message
    assert "Patient" in err.message
    assert "Provenance" in err.message
    assert len(supported_types()) == 27


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bad", [None, [], "Patient", {"id": "x"}, {"resourceType": 5}, {"resourceType": "Nope"}])
def test_wrong_resource_type(mode: str, bad: Any) -> None:
    _fail(bad, mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "ref",
    ["patient/p1", "Patient/", "Patient p1", "Patient/a b", "Unknown/x", "urn:uuid:nope", "Patient?identifier=a|b"],
)
def test_bad_reference_syntax(mode: str, ref: str) -> None:
    obs = copy.deepcopy(OBSERVATION) | {"subject": {"reference": ref}}
    err = _fail(obs, mode)
    assert "reference" in err.message


@pytest.mark.parametrize(
    "ref",
    [
        "Patient/p1",
        "Patient/p1/_history/2",
        "http://example.org/fhir/Patient/p1",
        "urn:uuid:53917de0-aa0c-0700-105a-4f7f893c62f6",
        "urn:oid:1.2.3",
        "#contained1",
    ],
)
def test_good_reference_syntax(ref: str) -> None:
    assert check_reference(ref) is None


def test_conditional_reference_only_when_allowed() -> None:
    ref = "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|123"
    assert check_reference(ref) is not None
    assert check_reference(ref, allow_conditional=True) is None


def test_collect_references_finds_nested_and_contained() -> None:
    res = {
        "resourceType": "Claim",
        "contained": [{"resourceType": "Coverage", "payor": [{"reference": "Organization/x"}]}],
        "item": [{"encounter": [{"reference": "Encounter/e"}]}],
        "note": [{"text": "reference"}],
    }
    assert sorted(collect_references(res)) == ["Encounter/e", "Organization/x"]


@pytest.mark.parametrize(
    ("change", "location"),
    [
        ({"colour": "red"}, "Observation.colour"),
        ({"status": ["final"]}, "Observation.status"),
        ({"identifier": {"value": "x"}}, "Observation.identifier"),
        ({"valueBoolean": "yes"}, "Observation.valueBoolean"),
        ({"id": "has space"}, "Observation.id"),
        ({"note": []}, "Observation.note"),
    ],
)
def test_fast_structure(change: dict[str, Any], location: str) -> None:
    err = _fail(copy.deepcopy(OBSERVATION) | change, "fast")
    assert err.location == location


def test_missing_required_element() -> None:
    obs = copy.deepcopy(OBSERVATION)
    del obs["code"]
    assert _fail(obs, "fast").location == "Observation.code"


def test_primitive_extension_allowed() -> None:
    validate_resource(copy.deepcopy(PATIENT) | {"_birthDate": {"extension": []}}, mode="fast")


def test_full_mode_checks_formats_without_echoing_phi() -> None:
    pat = copy.deepcopy(PATIENT) | {"birthDate": "Quixotica Zebedee"}
    err = _fail(pat, "full")
    assert err.location == "Patient.birthDate"
    assert "Quixotica" not in str(err)
    assert "Zebedee" not in str(err)


@pytest.mark.parametrize("mode", MODES)
def test_errors_never_echo_free_text(mode: str) -> None:
    pat = copy.deepcopy(PATIENT)
    pat["name"] = [{"family": ["Zebedee"], "given": "Quixotica"}]
    pat["secretNote"] = "Quixotica Zebedee HIV+"
    with pytest.raises(ValidationFailed) as info:
        validate_resource(pat, mode=mode)  # type: ignore[arg-type]
    assert "Quixotica" not in str(info.value)
    assert "Zebedee" not in str(info.value)


def test_full_mode_catches_nested_type_errors_fast_mode_does_not() -> None:
    pat = copy.deepcopy(PATIENT)
    pat["name"] = [{"family": ["Zebedee"]}]
    assert _fail(pat, "full").location == "Patient.name[0].family"
    validate_resource(pat, mode="fast")  # documented limit: fast checks only the top level


def test_unknown_mode() -> None:
    with pytest.raises(ValidationFailed, match="mode"):
        validate_resource(copy.deepcopy(PATIENT), mode="strict")  # type: ignore[arg-type]


def test_supported_types_match_definitions() -> None:
    from fhirgate.core.fhir import definitions

    assert set(definitions.SUPPORTED_TYPES) == supported_types()
