"""Contract: versioned writes, reads, history, atomic batches, delete, find_ids, counts, threads."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from store_sample import resources

from fhirgate.core.fhir.dates import parse_date_range
from fhirgate.errors import FhirgateError
from fhirgate.store.contract import FhirStore


def test_write_sets_meta_and_read_returns_it(store: FhirStore) -> None:
    original = resources()
    written = store.write(original)
    assert [w.version for w in written] == [1] * len(original)
    got = store.read("Observation", "o1")
    assert got is not None
    assert got.version == 1
    assert not got.deleted
    assert got.body["meta"]["versionId"] == "1"
    assert got.body["meta"]["lastUpdated"] == got.last_updated
    assert got.body["meta"]["profile"] == original[4]["meta"]["profile"]  # other meta kept
    parse_date_range(got.last_updated)  # a valid FHIR instant
    assert got.body["valueQuantity"]["value"] == 72
    assert "versionId" not in original[4]["meta"]  # the caller's dict is not mutated
    assert store.read("Observation", "nope") is None
    assert store.read("Patient", "o1") is None  # ids are per type


def test_update_versions_and_history(store: FhirStore) -> None:
    store.write(resources())
    changed = {**resources()[4], "status": "amended"}
    (second,) = store.write([changed])
    assert second.version == 2
    current = store.read("Observation", "o1")
    assert current is not None
    assert current.body["status"] == "amended"
    history = store.history("Observation", "o1")
    assert [h.version for h in history] == [2, 1]
    assert history[1].body["status"] == "final"
    first = store.vread("Observation", "o1", 1)
    assert first is not None
    assert first.body["status"] == "final"
    assert first.body["meta"]["versionId"] == "1"
    assert store.vread("Observation", "o1", 3) is None
    assert store.history("Observation", "missing") == []


def test_update_replaces_index_rows(store: FhirStore) -> None:
    from fhirgate.core.fhir.search import parse_search

    store.write(resources())
    store.write([{**resources()[4], "status": "cancelled"}])
    final = store.search(parse_search("Observation", [("status", "final")]))
    assert sorted(m.id for m in final.matches) == ["o3"]
    cancelled = store.search(parse_search("Observation", [("status", "cancelled")]))
    assert [m.id for m in cancelled.matches] == ["o1"]


def test_same_resource_twice_in_one_batch(store: FhirStore) -> None:
    a = {"resourceType": "Patient", "id": "twice", "gender": "male"}
    b = {"resourceType": "Patient", "id": "twice", "gender": "female"}
    out = store.write([a, b])
    assert [o.version for o in out] == [1, 2]
    current = store.read("Patient", "twice")
    assert current is not None
    assert current.body["gender"] == "female"


@pytest.mark.parametrize(
    "bad",
    [
        {"resourceType": "Patient"},  # no id
        {"resourceType": "Patient", "id": "has space"},
        {"id": "x"},  # no type
        {"resourceType": "NotAType", "id": "x"},  # extraction rejects it
    ],
)
def test_bad_batch_is_atomic(store: FhirStore, bad: dict[str, Any]) -> None:
    store.write([{"resourceType": "Patient", "id": "keep", "gender": "male"}])
    batch = [
        {"resourceType": "Patient", "id": "new1"},
        {"resourceType": "Patient", "id": "keep", "gender": "female"},
        bad,
    ]
    with pytest.raises(FhirgateError):
        store.write(batch)
    assert store.read("Patient", "new1") is None
    kept = store.read("Patient", "keep")
    assert kept is not None
    assert kept.version == 1
    assert kept.body["gender"] == "male"
    assert store.counts() == {"Patient": 1}
    # The store is still usable after the rollback.
    store.write([{"resourceType": "Patient", "id": "new1"}])
    assert store.read("Patient", "new1") is not None


def test_delete_keeps_history(store: FhirStore) -> None:
    from fhirgate.core.fhir.search import parse_search

    store.write(resources())
    assert store.delete("Observation", "o1") is True
    assert store.read("Observation", "o1") is None
    assert store.delete("Observation", "o1") is False
    assert store.delete("Observation", "never") is False
    history = store.history("Observation", "o1")
    assert [(h.version, h.deleted) for h in history] == [(2, True), (1, False)]
    found = store.search(parse_search("Observation", [("code", "8867-4")]))
    assert found.matches == []
    everything = store.search(parse_search("Observation", []))
    assert "o1" not in {m.id for m in everything.matches}
    assert store.counts()["Observation"] == 3
    (again,) = store.write([resources()[4]])
    assert again.version == 3
    assert [m.id for m in store.search(parse_search("Observation", [("code", "8867-4")])).matches] == ["o1"]


def test_counts_and_iter_type(store: FhirStore) -> None:
    store.write(resources())
    assert store.counts() == {"Encounter": 1, "Observation": 4, "Patient": 2, "Practitioner": 1}
    assert [r.id for r in store.iter_type("Observation")] == ["o1", "o2", "o3", "o5"]
    assert list(store.iter_type("Condition")) == []


def test_iter_type_many(store: FhirStore) -> None:
    batch = [{"resourceType": "Patient", "id": f"p{i}"} for i in range(1203)]
    store.write(batch)
    assert [r.id for r in store.iter_type("Patient")] == [f"p{i}" for i in range(1203)]


def test_find_ids(store: FhirStore) -> None:
    store.write(resources())
    assert store.find_ids("Practitioner", {"identifier": "http://hl7.org/fhir/sid/us-npi|999"}) == ["dr1"]
    assert store.find_ids("Practitioner", {"identifier": "http://hl7.org/fhir/sid/us-npi|998"}) == []
    assert store.find_ids("Patient", {"identifier": "urn:mrn|MRN1", "gender": "male"}) == ["p1"]
    assert store.find_ids("Patient", {"identifier": "urn:mrn|MRN1", "gender": "female"}) == []
    with pytest.raises(FhirgateError):
        store.find_ids("Patient", {"bogus": "x"})


def test_concurrent_readers_and_writer(store: FhirStore) -> None:
    store.write(resources())
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(50):
                got = store.read("Patient", "p1")
                assert got is not None
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def writer() -> None:
        try:
            for i in range(20):
                store.write([{"resourceType": "Patient", "id": f"t{i}"}])
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.counts()["Patient"] == 22
