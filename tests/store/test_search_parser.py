"""parse_search: the typed query it builds, and the InvalidInput it raises for every kind of bad input."""

from __future__ import annotations

import pytest

from fhirgate.core.fhir.dates import parse_date_range
from fhirgate.core.fhir.search import (
    DateValue,
    Include,
    MissingValue,
    QuantityValue,
    ReferenceValue,
    SortKey,
    StringValue,
    TokenValue,
    parse_search,
)
from fhirgate.errors import InvalidInput


def test_defaults() -> None:
    q = parse_search("Observation", [])
    assert (q.count, q.offset, q.total, q.compartment, q.clauses) == (20, 0, False, None, ())


def test_token_forms_and_escaping() -> None:
    q = parse_search("Observation", [("code", r"http://loinc.org|8867-4,|x\,y,sys|,a\|b")])
    assert q.clauses[0].values == (
        TokenValue("http://loinc.org", "8867-4"),
        TokenValue("", "x,y"),
        TokenValue("sys", None),
        TokenValue(None, "a|b", True),
    )


def test_repeated_params_are_anded() -> None:
    q = parse_search("Observation", [("date", "gt2019"), ("date", "lt2021")])
    assert [c.values[0].prefix for c in q.clauses if isinstance(c.values[0], DateValue)] == ["gt", "lt"]


def test_date_and_quantity_values() -> None:
    q = parse_search("Observation", [("date", "ge2020-03"), ("value-quantity", "le5.40|http://unitsofmeasure.org|mg")])
    low, high = parse_date_range("2020-03")
    assert q.clauses[0].values == (DateValue("ge", low, high),)
    qty = q.clauses[1].values[0]
    assert isinstance(qty, QuantityValue)
    assert (qty.prefix, qty.value, qty.system, qty.code) == ("le", 5.4, "http://unitsofmeasure.org", "mg")
    assert qty.low == pytest.approx(5.395)
    assert qty.high == pytest.approx(5.405)


def test_string_is_normalized() -> None:
    q = parse_search("Patient", [("name", "ZOË")])
    assert q.clauses[0].values == (StringValue("ZOË", "zoe"),)


def test_reference_forms() -> None:
    q = parse_search(
        "Observation", [("subject", "p1,Patient/p2,http://x.org/fhir/Patient/p3"), ("subject:Patient", "p4")]
    )
    assert q.clauses[0].values == (
        ReferenceValue(None, "p1"),
        ReferenceValue("Patient", "p2"),
        ReferenceValue(None, None, "http://x.org/fhir/Patient/p3"),
    )
    assert q.clauses[1].values == (ReferenceValue("Patient", "p4"),)


def test_chain() -> None:
    q = parse_search("Observation", [("patient.name", "peter"), ("subject:Patient.gender", "male")])
    first, second = q.clauses
    assert (first.code, first.chain_type) == ("patient", "Patient")
    assert first.chained is not None
    assert first.chained.code == "name"
    assert second.chain_type == "Patient"
    assert second.chained is not None
    assert second.chained.type == "token"


def test_result_params() -> None:
    q = parse_search(
        "Observation",
        [("_count", "5"), ("_offset", "10"), ("_sort", "-date,_id"), ("_include", "Observation:subject:Patient"),
         ("_revinclude", "Provenance:target"), ("_elements", "id,code"), ("_summary", "data"), ("_total", "accurate")],
    )  # fmt: skip
    assert (q.count, q.offset, q.summary, q.total, q.elements) == (5, 10, "data", True, ("id", "code"))
    assert q.sort == (SortKey("date", "date", True), SortKey("_id", "_id", False))
    assert q.includes == (Include("Observation", "subject", "Patient"),)
    assert q.revincludes == (Include("Provenance", "target", "Observation"),)
    assert parse_search("Observation", [("_summary", "count")]).count == 0
    zero = parse_search("Observation", [("_count", "0")])
    assert zero.count == 0
    assert zero.total


def test_missing() -> None:
    q = parse_search("Observation", [("encounter:missing", "true")])
    assert q.clauses[0].values == (MissingValue(True),)


def test_compartment_cannot_be_set_from_params() -> None:
    with pytest.raises(InvalidInput):
        parse_search("Observation", [("compartment", "p1")])
    with pytest.raises(InvalidInput):
        parse_search("Observation", [("_compartment", "p1")])


ERRORS = [
    ("Observation", [("bogus", "x")], "bogus", "code"),
    ("Observation", [("date", "xx2020")], "date", "ge"),
    ("Observation", [("date", "2020-13-01")], "date", "YYYY"),
    ("Observation", [("date", "yesterday")], "date", None),
    ("Observation", [("value-quantity", "abc")], "value-quantity", None),
    ("Observation", [("value-quantity", "5|a")], "value-quantity", None),
    ("Observation", [("code:exact", "x")], "code:exact", ":not"),
    ("Observation", [("code:in", "x")], "code:in", None),
    ("Patient", [("name:not", "x")], "name:not", ":exact"),
    ("Observation", [("date:exact", "2020")], "date:exact", ":missing"),
    ("Observation", [("subject:Medication", "x")], "subject:Medication", "Patient"),
    ("Observation", [("subject:lowercase", "x")], "subject:lowercase", None),
    ("Observation", [("subject", "Patient/bad id")], "subject", None),
    ("Observation", [("performer.name", "x")], "performer.name", "Practitioner"),
    ("Observation", [("patient.name.given", "x")], "patient.name.given", None),
    ("Observation", [("code.name", "x")], "code.name", None),
    ("Observation", [("patient.bogus", "x")], "patient.bogus", None),
    ("Observation", [("code", "")], "code", None),
    ("Observation", [("code", "a,,b")], "code", None),
    ("Observation", [("code", "a|b|c")], "code", None),
    ("Observation", [("encounter:missing", "maybe")], "encounter:missing", "true"),
    ("Observation", [("_count", "101")], "_count", "0..100"),
    ("Observation", [("_count", "-1")], "_count", None),
    ("Observation", [("_count", "5"), ("_count", "6")], "_count", None),
    ("Observation", [("_offset", "x")], "_offset", None),
    ("Observation", [("_sort", "bogus")], "_sort", "date"),
    ("Observation", [("_sort", "subject")], "_sort", None),
    ("Observation", [("_summary", "maybe")], "_summary", "count"),
    ("Observation", [("_total", "always")], "_total", "accurate"),
    ("Observation", [("_include", "Patient:general-practitioner")], "_include", None),
    ("Observation", [("_include", "Observation:status")], "_include", "subject"),
    ("Observation", [("_include", "*")], "_include", None),
    ("Observation", [("_include:iterate", "Observation:subject")], "_include:iterate", None),
    ("Observation", [("_include", "Observation:subject:Medication")], "_include", "Patient"),
    ("Observation", [("_revinclude", "Patient:general-practitioner")], "_revinclude", None),
    ("Observation", [("_elements", "a.b")], "_elements", None),
    ("Observation", [("_id", "bad id")], "_id", None),
    ("Observation", [("_id:not", "x")], "_id:not", None),
    ("Observation", [("_lastUpdated", "2020-99")], "_lastUpdated", None),
    ("Observation", [("_has:Observation:subject:code", "x")], "_has:Observation:subject:code", None),
    ("Widget", [], "resourceType", "Patient"),
]


@pytest.mark.parametrize(("rtype", "params", "param", "allowed"), ERRORS, ids=[str(e[1]) for e in ERRORS])
def test_bad_input_names_parameter(rtype: str, params: list[tuple[str, str]], param: str, allowed: str | None) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_search(rtype, params)
    assert info.value.param == param
    if allowed is not None:
        assert allowed in (info.value.allowed or "")
