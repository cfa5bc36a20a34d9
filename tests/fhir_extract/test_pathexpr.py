"""The FHIRPath-subset compiler: semantics on hand-written resources, fallbacks, reference parsing."""

from __future__ import annotations

from typing import Any

import pytest

from fhirgate.core.fhir import definitions as d
from fhirgate.core.fhir.fhirpath_ast import split_union
from fhirgate.core.fhir.pathexpr import (
    UnsupportedExpression,
    compile_expression,
    compile_terms,
    local_reference,
    parse,
    split_reference,
)

OBS_CHOICES = d.choice_elements("Observation")
PAT_CHOICES = d.choice_elements("Patient")


def run(expression: str, resource: dict[str, Any], rtype: str | None = None) -> list[Any]:
    rtype = rtype or resource["resourceType"]
    return compile_expression(expression, rtype, d.choice_elements(rtype)).evaluate(resource)


def test_fallbacks_among_supported_types_are_none() -> None:
    fallbacks = [
        (rtype, p.code, term.expression)
        for rtype in d.SUPPORTED_TYPES
        for p in d.search_params(rtype).values()
        for term in compile_terms(p.expression, rtype, d.choice_elements(rtype))
        if term.fallback
    ]
    assert fallbacks == []


def test_unsupported_expression_falls_back_to_fhirpathpy() -> None:
    patient = {"resourceType": "Patient", "name": [{"given": ["A", "B"]}, {"given": ["C"]}]}
    compiled = compile_expression("Patient.name.select(given.first())", "Patient", PAT_CHOICES)
    assert compiled.fallback
    assert compiled.keys is None
    assert compiled.evaluate(patient) == ["A", "C"]


def test_paths_flatten_arrays_and_skip_absent() -> None:
    patient = {"resourceType": "Patient", "name": [{"given": ["A", "B"], "family": "F"}, {"given": ["C"]}, {}]}
    assert run("Patient.name.given", patient) == ["A", "B", "C"]
    assert run("Patient.name.family", patient) == ["F"]
    assert run("Patient.address.city", patient) == []
    assert run("Patient.name.given.first()", patient) == ["A"]


def test_union_and_parentheses() -> None:
    obs = {
        "resourceType": "Observation",
        "code": {"text": "a"},
        "component": [{"code": {"text": "b"}}, {"code": {"text": "c"}}],
    }
    assert run("Observation.code | Observation.component.code", obs) == [{"text": "a"}, {"text": "b"}, {"text": "c"}]
    assert run("(Observation.code) | (Observation.component.code)", obs)[0] == {"text": "a"}
    assert split_union("(A.b.ofType(X)) | A.c.where(x = 'a|b')") == ["A.b.ofType(X)", "A.c.where(x = 'a|b')"]


def test_choice_elements_and_of_type() -> None:
    obs = {
        "resourceType": "Observation",
        "valueQuantity": {"value": 5},
        "effectivePeriod": {"start": "2020"},
        "component": [{"valueCodeableConcept": {"text": "x"}}, {"valueQuantity": {"value": 1}}],
    }
    assert run("Observation.value.ofType(Quantity)", obs) == [{"value": 5}]
    assert run("Observation.value.ofType(CodeableConcept)", obs) == []
    assert run("Observation.value as Quantity", obs) == [{"value": 5}]
    assert run("Observation.effective", obs) == [{"start": "2020"}]
    assert run("Observation.component.value.ofType(CodeableConcept)", obs) == [{"text": "x"}]
    assert run("Observation.component.value.ofType(Quantity)", obs) == [{"value": 1}]
    cond = {"resourceType": "Condition", "onsetAge": {"value": 3}, "onsetString": "child"}
    assert run("Condition.onset.ofType(Age)", cond) == [{"value": 3}]
    assert run("Condition.onset.ofType(Quantity)", cond) == [{"value": 3}]  # Age is a Quantity
    assert run("Condition.onset.ofType(string)", cond) == ["child"]
    compiled = compile_expression("Observation.value.ofType(Quantity)", "Observation", OBS_CHOICES)
    assert compiled.keys == frozenset({"valueQuantity"})


def test_where_resolve_is_checks_the_reference_type() -> None:
    obs = {
        "resourceType": "Observation",
        "subject": {"reference": "Patient/1"},
        "performer": [{"reference": "Practitioner/2"}, {"reference": "http://x.org/fhir/Patient/3"}],
    }
    assert run("Observation.subject.where(resolve() is Patient)", obs) == [{"reference": "Patient/1"}]
    assert run("Observation.subject.where(resolve() is Group)", obs) == []
    assert run("Observation.performer.where(resolve() is Patient)", obs) == [
        {"reference": "http://x.org/fhir/Patient/3"}
    ]
    obs["subject"] = {"reference": "urn:uuid:1234"}
    assert run("Observation.subject.where(resolve() is Patient)", obs) == []
    obs["subject"] = {"display": "no reference"}
    assert run("Observation.subject.where(resolve() is Patient)", obs) == []


def test_where_equality_filter() -> None:
    patient = {
        "resourceType": "Patient",
        "telecom": [{"system": "phone", "value": "1"}, {"system": "email", "value": "e"}, {"value": "?"}],
    }
    assert run("Patient.telecom.where(system='phone')", patient) == [{"system": "phone", "value": "1"}]
    assert run("Patient.telecom.where(system='fax')", patient) == []
    assert run("Patient.telecom.where(system='phone' or system='email').value", patient) == ["1", "e"]
    assert run("Patient.telecom.where(value.exists()).count()", patient) == [3]  # falls back, still right


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ({}, [False]),
        ({"deceasedBoolean": False}, [False]),
        ({"deceasedBoolean": True}, [True]),
        ({"deceasedDateTime": "2020-01-01"}, [True]),
    ],
)
def test_deceased_boolean_form(resource: dict[str, Any], expected: list[bool]) -> None:
    patient = {"resourceType": "Patient", **resource}
    assert run("Patient.deceased.exists() and Patient.deceased != false", patient) == expected


def test_where_equality_on_repeating_field_follows_fhirpath() -> None:
    import fhirpathpy
    from fhirpathpy.models import models

    patient = {"resourceType": "Patient", "name": [{"given": ["A"]}, {"given": ["A", "B"]}, {"given": "A"}]}
    expression = "Patient.name.where(given = 'A')"
    assert run(expression, patient) == fhirpathpy.evaluate(patient, expression, {}, models["r4"])
    assert run(expression, patient) == [{"given": ["A"]}, {"given": "A"}]


def test_extension_by_url() -> None:
    patient = {
        "resourceType": "Patient",
        "extension": [{"url": "a", "valueString": "x"}, {"url": "b", "valueString": "y"}],
    }
    assert run("Patient.extension('b')", patient) == [{"url": "b", "valueString": "y"}]


def test_root_of_another_type_falls_back() -> None:
    compiled = compile_expression("Observation.code", "Patient", PAT_CHOICES)
    assert compiled.fallback


@pytest.mark.parametrize("bad", ["Patient.", "(Patient.name", "'a"])
def test_parser_rejects_malformed_text(bad: str) -> None:
    with pytest.raises(UnsupportedExpression):
        parse(bad)


@pytest.mark.parametrize("outside", ["Patient.name[0]", "Patient.name.given + 'x'", "Patient.birthDate < @2000"])
def test_valid_fhirpath_outside_the_subset_is_not_compiled(outside: str) -> None:
    # The shared parser reads full FHIRPath; the search compiler refuses what it cannot turn into a closure,
    # so these run on fhirpathpy instead of being compiled wrongly (e.g. `+` or `<` as equality).
    assert compile_expression(outside, "Patient", PAT_CHOICES).fallback


@pytest.mark.parametrize(
    ("ref", "expected", "local"),
    [
        ("Patient/123", ("Patient", "123"), ("Patient", "123")),
        ("Patient/123/_history/4", ("Patient", "123"), ("Patient", "123")),
        ("https://x.org/fhir/Patient/123", ("Patient", "123"), None),
        ("https://x.org/fhir/Patient/123/_history/2", ("Patient", "123"), None),
        ("urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0", (None, None), None),
        ("#contained", (None, None), None),
        ("Patient?identifier=http://x.org/Patient/5", (None, None), None),
        ("Patient/", (None, None), None),
        ("Patient/a b", (None, None), None),
        ("patient/1", (None, None), None),
        ("Patient/1/extra", (None, None), None),
        ("Foo/Patient/1", ("Patient", "1"), None),
        ("", (None, None), None),
        ("Patient/" + "x" * 65, (None, None), None),
    ],
)
def test_reference_parsing(ref: str, expected: tuple[str | None, str | None], local: tuple[str, str] | None) -> None:
    assert split_reference(ref) == expected
    assert local_reference(ref) == local
