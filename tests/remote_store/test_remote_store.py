"""RemoteStore against the fake upstream: the contract's read side agrees with the embedded store it serves."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from fake_upstream import FakeUpstream, bodies

from fhirgate.core.fhir.search import parse_search
from fhirgate.errors import StoreError
from fhirgate.store.contract import FhirStore
from fhirgate.store.remote import READ_ONLY, RemoteStore
from fhirgate.store.remote.store import to_stored

Make = Callable[..., tuple[RemoteStore, FakeUpstream]]
A, OPTED_OUT = "pat-000000", "pat-000011"


def _all(store: FhirStore, query: Any) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    offset: int | None = 0
    while offset is not None:
        page = store.search(replace(query, offset=offset))
        out += bodies(page.matches)
        offset = page.next_offset
    return out


def test_read_vread_history(make_remote: Make, embedded: FhirStore) -> None:
    remote, _ = make_remote()
    assert remote.read("Patient", A) == embedded.read("Patient", A)
    assert remote.read("Patient", "nobody") is None
    assert remote.vread("Patient", A, 1) == embedded.vread("Patient", A, 1)
    assert remote.vread("Patient", A, 99) is None
    assert remote.history("Patient", A) == embedded.history("Patient", A)


@pytest.mark.parametrize("paging", ["offset", "links"])
def test_search_pages_agree(make_remote: Make, embedded: FhirStore, paging: str) -> None:
    remote, fake = make_remote(paging=paging)
    query = parse_search("Observation", [("subject", f"Patient/{A}"), ("_count", "7"), ("_sort", "date,_id")])
    expected = _all(embedded, query)
    assert len(expected) > 14
    assert _all(remote, query) == expected
    asked = [dict(r.url.params) for r in fake.requests if r.url.path.endswith("/Observation")]
    if paging == "offset":
        assert any(p.get("_offset") == "7" for p in asked)
    else:
        assert all("_offset" not in p for p in asked)
        # page 3 again: the next link is remembered, no walk from page 1
        before = len(fake.requests)
        assert bodies(remote.search(replace(query, offset=14)).matches) == expected[14:21]
        assert len(fake.requests) == before + 1


def test_search_total_includes_and_compartment(make_remote: Make, embedded: FhirStore) -> None:
    remote, _ = make_remote()
    query = parse_search("Encounter", [("_include", "Encounter:subject"), ("_count", "5"), ("_total", "accurate")])
    query = replace(query, compartment=A)
    got, want = remote.search(query), embedded.search(query)
    assert bodies(got.matches) == bodies(want.matches)
    assert bodies(got.included) == bodies(want.included) == [("Patient", A)]
    assert got.total == want.total
    counted = remote.search(replace(query, count=0))
    assert counted.total == want.total
    # no Practitioner is in a Patient compartment: answered without asking the upstream
    assert remote.search(replace(parse_search("Practitioner", []), compartment=A)).matches == []


@pytest.mark.parametrize("everything", [True, False])
def test_compartment_page(make_remote: Make, embedded: FhirStore, everything: bool) -> None:
    remote, fake = make_remote(everything=everything)
    types = ["Patient", "Condition", "Encounter"]
    want = embedded.compartment_page(A, types=types, count=500)
    got: list[tuple[str, str]] = []
    offset: int | None = 0
    while offset is not None:
        page = remote.compartment_page(A, types=types, count=10, offset=offset)
        got += bodies(page.matches)
        offset = page.next_offset
    assert sorted(got) == sorted(bodies(want.matches))
    used = any(r.url.path.endswith("$everything") for r in fake.requests)
    assert used is everything


def test_find_ids_iter_linked_counts_fingerprint(make_remote: Make, embedded: FhirStore) -> None:
    remote, _ = make_remote()
    assert remote.find_ids("Patient", {"_id": A}) == [A]
    assert sorted(s.id for s in remote.iter_type("Consent")) == sorted(s.id for s in embedded.iter_type("Consent"))
    team = next(iter(embedded.iter_type("Practitioner"))).ref
    via = (("Encounter", "participant"), ("CareTeam", "participant"), ("Patient", "general-practitioner"))
    assert remote.linked_patients(team, via) == embedded.linked_patients(team, via)
    counts = remote.counts()
    assert counts["Patient"] == 12
    assert counts["Observation"] == embedded.counts()["Observation"]
    mark = remote.fingerprint("Consent")
    assert mark == remote.fingerprint("Consent") and mark.startswith("3|")


def test_writes_are_refused(make_remote: Make) -> None:
    remote, fake = make_remote()
    with pytest.raises(StoreError, match="read-only"):
        remote.write([{"resourceType": "Patient", "id": "x"}])
    with pytest.raises(StoreError) as err:
        remote.delete("Patient", A)
    assert err.value.message == READ_ONLY
    assert fake.requests == []


def test_untrusted_bodies_are_checked() -> None:
    assert to_stored({"resourceType": "Patient", "id": "a b"}) is None
    assert to_stored({"resourceType": "Basic", "id": "x"}) is None
    assert to_stored({"resourceType": "Patient", "id": "x"}, "Observation") is None
    opaque = to_stored({"resourceType": "Patient", "id": "x", "meta": {"versionId": "W/abc", "lastUpdated": 5}})
    assert opaque is not None and (opaque.version, opaque.last_updated) == (1, "")
    numbered = to_stored({"resourceType": "Patient", "id": "x", "meta": {"versionId": "7"}})
    assert numbered is not None and numbered.version == 7
