"""Malformed Consents never raise; unattributable ones are listed, attributable ones fail closed when strict."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date, datetime
from typing import Any

import pytest
from consent_builders import NOW, consent, label, prov, query
from hypothesis import given, settings
from hypothesis import strategies as st

from fhirgate.core.policy.consent import ConsentQuery, ConsentSet, Rejection, compile_consent
from fhirgate.errors import InvalidInput

UNATTRIBUTABLE: list[Any] = [
    None,
    42,
    "Consent",
    [],
    {"resourceType": "Patient", "id": "p1"},
    consent() | {"patient": None},
    consent() | {"patient": "Patient/p1"},
    consent() | {"patient": {"reference": "urn:uuid:0b6b5b0c-0000-4000-8000-000000000000"}},
    consent() | {"patient": {"reference": "Practitioner/pr-1"}},
    consent() | {"patient": {"reference": "Patient/has space"}},
    consent() | {"patient": {"reference": 7}},
    consent() | {"patient": {"display": "no reference"}},
]

ATTRIBUTABLE_BAD: list[Any] = [
    consent(prov("deny")) | {"status": 5},
    consent(prov("deny")) | {"status": "Active"},
    consent(prov("deny")) | {"id": "bad id with spaces"},
    consent(prov("deny")) | {"id": None},
    consent(prov("deny")) | {"policyRule": 42},
    consent(prov("deny")) | {"scope": "patient-privacy"},
    consent("deny"),  # type: ignore[arg-type]
    consent(prov("maybe")),
    consent(prov("deny", period={"start": "yesterday"})),
    consent(prov("deny", period="2020")),
    consent(prov("deny", period={"start": "2020-02-30"})),
    consent(prov("deny", dataPeriod={"end": 2020})),
    consent(prov("deny", securityLabel="ETH")),
    consent(prov("deny", securityLabel=["ETH"])),
    consent(prov("deny", actor=5)),
    consent(prov("deny", data=[{"meaning": "everything", "reference": {"reference": "Observation/o1"}}])),
    consent(prov("deny", data=[{"meaning": "instance"}])),
    consent(prov("deny") | {"provision": "nested"}),
    consent(prov("deny") | {"provision": [5]}),
]


def deep(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "permit"}
    for _ in range(levels):
        node = {"type": "deny", "provision": [node]}
    return node


@pytest.mark.parametrize("resource", UNATTRIBUTABLE)
def test_unattributable_is_ignored_and_listed(resource: Any) -> None:
    cs = ConsentSet.from_resources([resource])
    assert len(cs.ignored) == 1
    assert cs.patients_with_rules() == frozenset()
    assert cs.patients_with_unreadable() == frozenset()
    assert cs.evaluate("p1", query()).reason == "consent.none"


@pytest.mark.parametrize("resource", ATTRIBUTABLE_BAD)
def test_attributable_malformed_fails_closed_when_strict(resource: Any) -> None:
    cs = ConsentSet.from_resources([resource])
    assert len(cs.ignored) == 1
    assert cs.patients_with_unreadable() == {"p1"}
    d = cs.evaluate("p1", query())
    assert (d.allowed, d.reason) == (False, "consent.unreadable")
    assert cs.opted_out("p1").reason == "consent.unreadable"
    assert cs.patients_opted_out(NOW) == {"p1"}
    assert cs.patients_with_rules() == {"p1"}
    lenient = ConsentSet.from_resources([resource], strict=False)
    assert lenient.evaluate("p1", query()).reason == "consent.none"
    assert lenient.patients_with_unreadable() == {"p1"}
    assert lenient.patients_opted_out(NOW) == frozenset()


def test_too_deep_tree_is_unreadable() -> None:
    assert isinstance(compile_consent(consent(deep(15))), type(compile_consent(consent())))
    rejected = compile_consent(consent(deep(40)))
    assert isinstance(rejected, Rejection)
    assert rejected.unreadable


def test_reasons_name_elements_not_values() -> None:
    cs = ConsentSet.from_resources([consent(prov("deny", period={"start": "Jane Doe"}))])
    ((cid, reason),) = cs.ignored
    assert cid == "c1"
    assert "Jane" not in reason
    assert reason == "malformed element provision.period"


def test_ignored_lists_every_skip_in_order() -> None:
    cs = ConsentSet.from_resources(
        [
            consent(cid="a", status="draft"),
            consent(cid="b", scope="research"),
            consent(cid="c") | {"patient": None},
            {"resourceType": "Observation"},
        ]
    )
    assert cs.ignored == [
        ("a", "status draft"),
        ("b", "scope research does not govern information access"),
        ("c", "patient reference missing or malformed"),
        ("(unknown)", "not a Consent resource"),
    ]


def test_hostile_mapping_does_not_escape() -> None:
    class Hostile(Mapping[str, Any]):
        def __getitem__(self, key: str) -> Any:
            if key == "resourceType":
                return "Consent"
            raise RuntimeError("boom")

        def __iter__(self) -> Iterator[str]:
            return iter(["resourceType"])

        def __len__(self) -> int:
            return 1

    cs = ConsentSet.from_resources([Hostile()])
    assert cs.ignored


def test_iterator_errors_propagate() -> None:
    def failing() -> Iterator[dict[str, Any]]:
        yield consent()
        raise OSError("store cursor failed")

    with pytest.raises(OSError, match="cursor"):
        ConsentSet.from_resources(failing())


@pytest.mark.parametrize("bad", [None, 5, "Consent", {"resourceType": "Consent"}])
def test_from_resources_rejects_non_iterables(bad: Any) -> None:
    with pytest.raises(InvalidInput):
        ConsentSet.from_resources(bad)


@pytest.mark.parametrize(
    "kw",
    [
        {"resource_type": "condition"},
        {"resource_type": ""},
        {"purpose": ""},
        {"purpose": "TREAT;DROP"},
        {"action": "read"},
        {"now": "2025-01-01"},
        {"resource_date": "2025-01-01"},
        {"actor_refs": "Practitioner/pr-1"},
        {"actor_refs": frozenset({"pr-1"})},
        {"labels": frozenset({1})},
        {"resource_ref": "c1"},
    ],
)
def test_query_rejects_bad_arguments(kw: dict[str, Any]) -> None:
    base: dict[str, Any] = {"resource_type": "Condition", "purpose": "TREAT", "now": NOW}
    with pytest.raises(InvalidInput):
        ConsentQuery(**(base | kw))


def test_query_normalises() -> None:
    q = ConsentQuery(
        resource_type="Condition",
        purpose="TREAT",
        now=datetime(2025, 6, 30, 12, 0),
        labels={"R"},  # type: ignore[arg-type]
        actor_refs=["https://x.example/fhir/Practitioner/pr-1"],  # type: ignore[arg-type]
        resource_ref="Condition/c1/_history/2",
    )
    assert q.now == date(2025, 6, 30)
    assert q.labels == frozenset({"R"})
    assert q.actor_refs == frozenset({"Practitioner/pr-1"})
    assert q.resource_ref == "Condition/c1"


@pytest.mark.parametrize("pid", ["", "a b", None, 5, "Patient/"])
def test_bad_patient_id_is_invalid_input(pid: Any) -> None:
    cs = ConsentSet.from_resources([])
    with pytest.raises(InvalidInput):
        cs.evaluate(pid, query())
    with pytest.raises(InvalidInput):
        cs.opted_out(pid)


def test_evaluate_rejects_non_query() -> None:
    with pytest.raises(InvalidInput):
        ConsentSet.from_resources([]).evaluate("p1", {"resource_type": "Condition"})  # type: ignore[arg-type]


KEYS = ["type", "period", "actor", "action", "securityLabel", "purpose", "class", "code", "dataPeriod", "data"]
KEYS += ["provision", "reference", "coding", "system", "start", "end", "meaning", "role"]
SCALARS = st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.sampled_from(["deny", "permit", "ETH"])
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(provision=JSON, status=st.sampled_from(["active", "inactive", 3, None]), rule=JSON)
def test_garbage_never_raises(provision: Any, status: Any, rule: Any) -> None:
    resource = consent() | {"provision": provision, "status": status, "policyRule": rule}
    cs = ConsentSet.from_resources([resource])
    d = cs.evaluate("p1", query(labels={"ETH"}))
    assert d.reason.startswith("consent.")
    assert cs.opted_out("p1", NOW).reason.startswith("consent.")


def test_label_deny_survives_garbage_in_a_sibling_consent() -> None:
    good = consent(prov("deny", securityLabel=[label("ETH")]), cid="good")
    bad = consent(prov("deny", securityLabel="ETH"), cid="bad")
    cs = ConsentSet.from_resources([good, bad], strict=False)
    assert cs.evaluate("p1", query(labels={"ETH"})).reason == "consent.deny.label"
