"""Contract: search semantics per parameter type, modifier and prefix; each case lists the exact ids matched."""

from __future__ import annotations

import dataclasses

import pytest
from store_sample import VITALS, resources

from fhirgate.core.fhir.search import SearchQuery, parse_search
from fhirgate.store.contract import FhirStore


@pytest.fixture
def loaded(store: FhirStore) -> FhirStore:
    store.write(resources())
    return store


@pytest.fixture(scope="module")
def readonly(shared_store: FhirStore) -> FhirStore:
    """The sample, loaded once per implementation, for tests that only search."""
    shared_store.write(resources())
    return shared_store


def ids(store: FhirStore, rtype: str, params: list[tuple[str, str]], compartment: str | None = None) -> list[str]:
    query = parse_search(rtype, [*params, ("_count", "100")])
    if compartment is not None:
        query = dataclasses.replace(query, compartment=compartment)
    return sorted(m.id for m in store.search(query).matches)


CASES = [
    # token
    ("Patient", [("gender", "male")], ["p1"]),
    ("Patient", [("gender", "male,female")], ["p1", "p2"]),
    ("Patient", [("identifier", "urn:mrn|MRN1")], ["p1"]),
    ("Patient", [("identifier", "urn:mrn|")], ["p1"]),
    ("Patient", [("identifier", "|MRN1")], []),
    ("Patient", [("identifier", "urn:other|MRN1")], []),
    ("Observation", [("code", "http://loinc.org|8867-4")], ["o1"]),
    ("Observation", [("code", "8867-4")], ["o1"]),
    ("Observation", [("code:not", "8867-4")], ["o2", "o3", "o5"]),
    ("Observation", [("code:text", "heart")], ["o1"]),
    ("Observation", [("code:text", "rate")], ["o1"]),
    ("Observation", [("code:text", "eart")], []),
    ("Observation", [("code:below", "ABC")], ["o3"]),
    ("Observation", [("code:below", "http://acme.org/codes|ABC")], ["o3"]),
    ("Observation", [("code:below", "http://loinc.org|ABC")], []),
    ("Observation", [("status", "final"), ("code", "8867-4")], ["o1"]),
    ("Observation", [("status", "final"), ("code", "29463-7")], []),
    # string
    ("Patient", [("name", "pet")], ["p1"]),
    ("Patient", [("name", "PETER")], ["p1"]),
    ("Patient", [("name", "zoe")], ["p1"]),
    ("Patient", [("name", "eter")], []),
    ("Patient", [("name:contains", "eter")], ["p1"]),
    ("Patient", [("name:contains", "MIT")], ["p2"]),
    ("Patient", [("name:exact", "Peter")], ["p1"]),
    ("Patient", [("name:exact", "peter")], []),
    ("Patient", [("name:exact", "Pete")], []),
    ("Patient", [("family", "smith,house")], ["p2"]),
    # date: o1 2020-03-04T10:00Z, o2 2021-01-01..2021-01-31, o3 2019
    ("Observation", [("date", "2020")], ["o1"]),
    ("Observation", [("date", "2020-03-04")], ["o1"]),
    ("Observation", [("date", "eq2021-01")], ["o2"]),
    ("Observation", [("date", "2021-01-15")], []),
    ("Observation", [("date", "ne2020")], ["o2", "o3"]),
    ("Observation", [("date", "gt2020-06")], ["o2"]),
    ("Observation", [("date", "lt2020")], ["o3"]),
    ("Observation", [("date", "ge2021-01-01")], ["o2"]),
    ("Observation", [("date", "ge2020-03-04T10:00:00Z")], ["o1", "o2"]),
    ("Observation", [("date", "le2019-06")], ["o3"]),
    ("Observation", [("date", "le2020-03-04")], ["o1", "o3"]),
    ("Observation", [("date", "sa2020-12-31")], ["o2"]),
    ("Observation", [("date", "eb2020")], ["o3"]),
    ("Observation", [("date", "gt2019"), ("date", "lt2021")], ["o1"]),
    ("Observation", [("date:missing", "true")], ["o5"]),
    ("Patient", [("birthdate", "1990")], ["p2"]),
    ("Patient", [("birthdate", "1990-03-15")], []),
    ("Patient", [("birthdate", "lt1980")], ["p1"]),
    ("Encounter", [("date", "2020-03-04")], ["e1"]),
    # quantity: o1 72 /min, o2 70.5 kg
    ("Observation", [("value-quantity", "72")], ["o1"]),
    ("Observation", [("value-quantity", "70")], []),
    ("Observation", [("value-quantity", "70.5")], ["o2"]),
    ("Observation", [("value-quantity", "gt71")], ["o1"]),
    ("Observation", [("value-quantity", "lt71")], ["o2"]),
    ("Observation", [("value-quantity", "ge72")], ["o1"]),
    ("Observation", [("value-quantity", "le70.5")], ["o2"]),
    ("Observation", [("value-quantity", "ne72")], ["o2"]),
    ("Observation", [("value-quantity", "ap80")], ["o1"]),
    ("Observation", [("value-quantity", "72||/min")], ["o1"]),
    ("Observation", [("value-quantity", "72|http://unitsofmeasure.org|kg")], []),
    ("Observation", [("value-quantity", "gt1|http://unitsofmeasure.org|kg")], ["o2"]),
    ("Observation", [("value-quantity:missing", "true")], ["o3", "o5"]),
    ("Observation", [("value-quantity:missing", "false")], ["o1", "o2"]),
    # reference
    ("Observation", [("subject", "Patient/p1")], ["o1", "o3", "o5"]),
    ("Observation", [("subject", "p1")], ["o1", "o3", "o5"]),
    ("Observation", [("subject:Patient", "p1")], ["o1", "o3", "o5"]),
    ("Observation", [("subject:Device", "p1")], []),
    ("Observation", [("subject", "Patient/zzz")], []),
    ("Observation", [("patient", "p2")], ["o2"]),
    ("Observation", [("performer", "Practitioner/dr1")], ["o1"]),
    ("Observation", [("performer", "http://other.org/fhir/Practitioner/x9")], ["o3"]),
    ("Observation", [("encounter:missing", "true")], ["o2", "o3", "o5"]),
    ("Patient", [("general-practitioner", "Practitioner/dr1")], ["p1"]),
    # uri
    ("Observation", [("_profile", VITALS)], ["o1"]),
    ("Observation", [("_profile:below", "http://hl7.org/fhir/us/core/")], ["o1"]),
    ("Observation", [("_profile", "http://hl7.org/fhir/us/core")], []),
    # _id, _lastUpdated
    ("Observation", [("_id", "o1,o2,nope")], ["o1", "o2"]),
    ("Observation", [("_lastUpdated", "gt2000")], ["o1", "o2", "o3", "o5"]),
    ("Observation", [("_lastUpdated", "lt2000")], []),
    # chaining
    ("Observation", [("subject:Patient.name", "peter")], ["o1", "o3", "o5"]),
    ("Observation", [("patient.name", "anna")], ["o2"]),
    ("Observation", [("patient.gender", "female")], ["o2"]),
    ("Observation", [("performer:Practitioner.identifier", "http://hl7.org/fhir/sid/us-npi|999")], ["o1"]),
    ("Observation", [("performer:Practitioner.identifier", "http://hl7.org/fhir/sid/us-npi|998")], []),
    ("Observation", [("encounter:Encounter.date", "2020-03-04")], ["o1"]),
    ("Observation", [("encounter:Encounter.date", "2020-03-05")], []),
]


@pytest.mark.parametrize(("rtype", "params", "expected"), CASES, ids=[f"{c[0]}?{c[1]}" for c in CASES])
def test_search_matches_exactly(
    readonly: FhirStore, rtype: str, params: list[tuple[str, str]], expected: list[str]
) -> None:
    assert ids(readonly, rtype, params) == expected


def test_no_clauses_returns_all_of_type(loaded: FhirStore) -> None:
    assert ids(loaded, "Patient", []) == ["p1", "p2"]
    assert ids(loaded, "Condition", []) == []


def test_include_and_revinclude(loaded: FhirStore) -> None:
    page = loaded.search(parse_search("Observation", [("_id", "o1"), ("_include", "Observation:subject")]))
    assert [m.id for m in page.matches] == ["o1"]
    assert [r.ref for r in page.included] == ["Patient/p1"]
    page = loaded.search(
        parse_search("Observation", [("_id", "o1"), ("_include", "Observation:performer:Practitioner")])
    )
    assert [r.ref for r in page.included] == ["Practitioner/dr1"]
    page = loaded.search(parse_search("Observation", [("_id", "o1"), ("_include", "Observation:performer:Patient")]))
    assert page.included == []
    page = loaded.search(parse_search("Patient", [("_id", "p1"), ("_revinclude", "Observation:subject")]))
    assert sorted(r.ref for r in page.included) == ["Observation/o1", "Observation/o3", "Observation/o5"]
    page = loaded.search(parse_search("Practitioner", [("_revinclude", "Patient:general-practitioner")]))
    assert [r.ref for r in page.included] == ["Patient/p1"]
    # Two includes reaching the same resource yield it once.
    page = loaded.search(
        parse_search(
            "Observation", [("_id", "o1"), ("_include", "Observation:subject"), ("_include", "Observation:patient")]
        )
    )
    assert [r.ref for r in page.included] == ["Patient/p1"]


def test_compartment_restricts_matches(loaded: FhirStore) -> None:
    assert ids(loaded, "Observation", [], compartment="p1") == ["o1", "o3", "o5"]
    assert ids(loaded, "Observation", [], compartment="p2") == ["o2", "o5"]
    assert ids(loaded, "Observation", [("code", "29463-7")], compartment="p1") == []
    assert ids(loaded, "Patient", [], compartment="p1") == ["p1"]
    assert ids(loaded, "Practitioner", [], compartment="p1") == []
    assert ids(loaded, "Observation", [], compartment="nobody") == []


def test_includes_cannot_escape_compartment(loaded: FhirStore) -> None:
    def included(rtype: str, params: list[tuple[str, str]], patient: str) -> list[str]:
        query = dataclasses.replace(parse_search(rtype, params), compartment=patient)
        return sorted(r.ref for r in loaded.search(query).included)

    # o5's performer is Patient/p2: outside p1's compartment.
    assert included("Observation", [("_include", "Observation:performer")], "p1") == []
    assert included("Observation", [("_include", "Observation:performer")], "p2") == ["Patient/p2"]
    assert included("Observation", [("_include", "Observation:subject")], "p1") == ["Patient/p1"]
    # Unrestricted, the same query does include the out-of-compartment resources.
    page = loaded.search(parse_search("Observation", [("_include", "Observation:performer")]))
    assert sorted(r.ref for r in page.included) == ["Patient/p2", "Practitioner/dr1"]
    # o6 points at p1's encounter but belongs to p2: a revinclude under p1 must not return it.
    loaded.write(
        [{"resourceType": "Observation", "id": "o6", "status": "final", "code": {"text": "x"},
          "subject": {"reference": "Patient/p2"}, "encounter": {"reference": "Encounter/e1"}}]
    )  # fmt: skip
    assert included("Encounter", [("_revinclude", "Observation:encounter")], "p1") == ["Observation/o1"]
    assert included("Encounter", [("_revinclude", "Observation:encounter")], "p2") == []
    unrestricted = loaded.search(parse_search("Encounter", [("_revinclude", "Observation:encounter")]))
    assert sorted(r.ref for r in unrestricted.included) == ["Observation/o1", "Observation/o6"]


def test_compartment_page(loaded: FhirStore) -> None:
    page = loaded.compartment_page("p1")
    refs = [m.ref for m in page.matches]
    assert refs[0] == "Patient/p1"
    assert sorted(refs[1:]) == ["Encounter/e1", "Observation/o1", "Observation/o3", "Observation/o5"]
    assert page.total == 5
    assert page.next_offset is None
    first = loaded.compartment_page("p1", count=2)
    rest = loaded.compartment_page("p1", count=2, offset=2)
    last = loaded.compartment_page("p1", count=2, offset=4)
    assert [m.ref for m in first.matches + rest.matches + last.matches] == refs
    assert first.next_offset == 2
    assert last.next_offset is None
    only = loaded.compartment_page("p1", types=["Encounter"])
    assert [m.ref for m in only.matches] == ["Encounter/e1"]
    assert loaded.compartment_page("p1", since="2999-01-01T00:00:00Z").matches == []
    assert next(m.ref for m in loaded.compartment_page("p2").matches) == "Patient/p2"
    assert "Observation/o1" not in {m.ref for m in loaded.compartment_page("p2").matches}


def test_sort(loaded: FhirStore) -> None:
    def order(params: list[tuple[str, str]]) -> list[str]:
        return [m.id for m in loaded.search(parse_search("Observation", params)).matches]

    assert order([("_sort", "date")]) == ["o3", "o1", "o2", "o5"]  # missing values last
    assert order([("_sort", "-date")]) == ["o2", "o1", "o3", "o5"]
    assert order([("_sort", "-_id")]) == ["o5", "o3", "o2", "o1"]
    assert order([("_sort", "status,-date")]) == ["o5", "o1", "o3", "o2"]
    assert order([("_sort", "value-quantity")]) == ["o2", "o1", "o3", "o5"]
    patients = loaded.search(parse_search("Patient", [("_sort", "-birthdate")])).matches
    assert [p.id for p in patients] == ["p2", "p1"]
    by_name = loaded.search(parse_search("Patient", [("_sort", "family")])).matches
    assert [p.id for p in by_name] == ["p1", "p2"]


def test_paging_and_total(loaded: FhirStore) -> None:
    seen: list[str] = []
    query: SearchQuery = parse_search("Observation", [("_count", "3"), ("_total", "accurate"), ("_sort", "_id")])
    page = loaded.search(query)
    assert page.total == 4
    assert page.next_offset == 3
    seen += [m.id for m in page.matches]
    page = loaded.search(dataclasses.replace(query, offset=3))
    assert page.next_offset is None
    seen += [m.id for m in page.matches]
    assert seen == ["o1", "o2", "o3", "o5"]
    counted = loaded.search(parse_search("Observation", [("_summary", "count"), ("status", "final")]))
    assert counted.matches == []
    assert counted.total == 2
    zero = loaded.search(parse_search("Observation", [("_count", "0")]))
    assert zero.matches == []
    assert zero.total == 4
    assert loaded.search(parse_search("Observation", [])).total is None
