"""Security labels: reading meta.security, sensitive sets, label decisions and the withheld tally."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from fhirgate.core.policy.decision import Decision
from fhirgate.core.policy.labels import (
    ACTCODE_SYSTEM,
    CONFIDENTIALITY_SYSTEM,
    SENSITIVE_DEFAULT,
    WithheldTally,
    category_of,
    label_decision,
    labels_of,
    sensitive_labels,
)
from fhirgate.errors import InvalidInput


def res(*codings: object) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": "c1", "meta": {"security": list(codings)}}


def test_sud_record_labels() -> None:
    r = res(
        {"system": CONFIDENTIALITY_SYSTEM, "code": "R"},
        {"system": ACTCODE_SYSTEM, "code": "ETH"},
        {"system": ACTCODE_SYSTEM, "code": "42CFRPart2"},
        {"system": ACTCODE_SYSTEM, "code": "NORDSCLCD", "display": "no redisclosure"},
    )
    assert labels_of(r) == {"R", "ETH", "42CFRPart2", "NORDSCLCD"}


@pytest.mark.parametrize(
    ("system", "code"),
    [
        ("http://hl7.org/fhir/v3/ActCode", "HIV"),
        ("urn:oid:2.16.840.1.113883.5.4", "HIV"),
        ("http://hl7.org/fhir/v3/Confidentiality", "V"),
        ("urn:oid:2.16.840.1.113883.5.25", "V"),
    ],
)
def test_older_uris_are_aliases(system: str, code: str) -> None:
    assert labels_of(res({"system": system, "code": code})) == {code}


@pytest.mark.parametrize(
    "coding",
    [
        {"system": "http://example.org/local-tags", "code": "R"},  # unknown system, even with a known code
        {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HTEST"},
        {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "ETH"},
        {"system": CONFIDENTIALITY_SYSTEM, "code": "ETH"},  # not a confidentiality code
        {"system": CONFIDENTIALITY_SYSTEM, "code": "r"},  # codes are case-sensitive
        {"code": "SOMETHING"},  # system-less and unknown
        {"system": ACTCODE_SYSTEM, "code": " ETH"},
        {"system": ACTCODE_SYSTEM, "code": ""},
        {"system": ACTCODE_SYSTEM, "code": 5},
        {"system": 5, "code": "ETH"},
        "ETH",
        None,
        ["ETH"],
    ],
)
def test_unknown_or_malformed_codings_are_ignored(coding: object) -> None:
    r = res(coding, {"system": ACTCODE_SYSTEM, "code": "PSY"})
    assert labels_of(r) == {"PSY"}


def test_system_less_known_code_is_kept() -> None:
    # a feed that drops Coding.system must not be able to strip a label
    assert labels_of(res({"code": "R"}, {"code": "HIV"})) == {"R", "HIV"}


@pytest.mark.parametrize(
    "resource",
    [
        {},
        {"meta": None},
        {"meta": "x"},
        {"meta": []},
        {"meta": {"security": None}},
        {"meta": {"security": "R"}},
        {"meta": {"security": {"system": CONFIDENTIALITY_SYSTEM, "code": "R"}}},
        {"meta": {"security": 3}},
    ],
)
def test_malformed_meta_yields_no_labels(resource: dict[str, Any]) -> None:
    assert labels_of(resource) == frozenset()


def test_non_mapping_resource_and_hostile_mapping() -> None:
    assert labels_of("not a resource") == frozenset()  # type: ignore[arg-type]

    class Hostile(Mapping[str, Any]):
        def __getitem__(self, key: str) -> Any:
            raise RuntimeError("boom")

        def __iter__(self) -> Iterator[str]:
            raise RuntimeError("boom")

        def __len__(self) -> int:
            return 1

    assert labels_of(Hostile()) == frozenset()


def test_sensitive_default_is_the_issue_set() -> None:
    assert {"R", "V", "ETH", "PSY", "HIV", "STD", "SDV", "SEX", "BH", "GDIS", "42CFRPart2"} == SENSITIVE_DEFAULT
    assert not {"U", "L", "M", "N", "NORDSCLCD"} & SENSITIVE_DEFAULT


def test_sensitive_labels() -> None:
    assert sensitive_labels({"N", "NORDSCLCD"}, SENSITIVE_DEFAULT) == frozenset()
    assert sensitive_labels({"R", "ETH", "NORDSCLCD"}, SENSITIVE_DEFAULT) == {"R", "ETH"}
    assert sensitive_labels({"R", "ETH"}, frozenset({"ETH"})) == {"ETH"}


@pytest.mark.parametrize(
    ("labels", "visible", "allowed", "reason"),
    [
        (set(), set(), True, "label.none"),
        ({"N", "NORDSCLCD"}, set(), True, "label.none"),
        ({"R", "PSY"}, {"R", "PSY"}, True, "label.visible"),
        ({"R", "PSY"}, {"PSY"}, False, "label.withheld"),
        ({"R", "ETH", "42CFRPart2"}, {"R", "ETH"}, False, "label.withheld"),
        ({"R"}, {"V"}, False, "label.withheld"),  # V does not imply R
        ({"HIV"}, {"R", "PSY", "ETH"}, False, "label.withheld"),
    ],
)
def test_label_decision(labels: set[str], visible: set[str], allowed: bool, reason: str) -> None:
    d = label_decision(frozenset(labels), SENSITIVE_DEFAULT, frozenset(visible))
    assert (d.allowed, d.reason) == (allowed, reason)


def test_label_decision_names_withheld_codes_sorted() -> None:
    d = label_decision(frozenset({"R", "ETH", "42CFRPart2", "NORDSCLCD"}), SENSITIVE_DEFAULT, frozenset({"R"}))
    assert d.detail == "withheld sensitive labels: 42CFRPart2, ETH"


def test_tally_sentence_matches_issue() -> None:
    t = WithheldTally()
    t.add("sensitivity")
    t.add("consent")
    t.add("sensitivity")
    assert t.sentence() == "3 items withheld: 2 sensitivity, 1 consent"
    assert t.total == 3
    assert t.counts() == {"sensitivity": 2, "consent": 1}


def test_tally_ordering_is_deterministic_on_ties() -> None:
    a = WithheldTally({"sensitivity": 1, "care-team": 1, "consent": 1})
    b = WithheldTally({"consent": 1, "sensitivity": 1, "care-team": 1})
    assert a.sentence() == b.sentence() == "3 items withheld: 1 care-team, 1 consent, 1 sensitivity"


def test_tally_singular_and_empty() -> None:
    t = WithheldTally()
    assert t.sentence() == ""
    assert not t
    t.add("consent")
    assert t.sentence() == "1 item withheld: 1 consent"
    assert t


def test_tally_merge_and_add() -> None:
    a = WithheldTally({"sensitivity": 2})
    b = WithheldTally({"consent": 1, "sensitivity": 1})
    c = a + b
    assert c.counts() == {"sensitivity": 3, "consent": 1}
    assert a.counts() == {"sensitivity": 2}  # + does not mutate
    assert a.merge(b) is a
    assert a == c
    a.add("consent", 0)
    assert a == c


def test_tally_from_decisions() -> None:
    t = WithheldTally()
    t.add_decision(Decision.deny("label.withheld", "withheld sensitive labels: HIV"))
    t.add_decision(Decision.deny("consent.deny.label"))
    t.add_decision(Decision.deny("consent.optout"))
    t.add_decision(Decision.allow("consent.none"))
    t.add_decision(Decision.deny("careteam.outside"))
    t.add_decision(Decision.deny("something.else"))
    assert t.counts() == {"consent": 2, "care-team": 1, "policy": 1, "sensitivity": 1}
    assert category_of("label.withheld") == "sensitivity"


@pytest.mark.parametrize(("category", "n"), [("John Smith", 1), ("", 1), ("CONSENT", 1), ("consent", -1), ("x", True)])
def test_tally_rejects_bad_input(category: str, n: int) -> None:
    with pytest.raises(InvalidInput):
        WithheldTally().add(category, n)
