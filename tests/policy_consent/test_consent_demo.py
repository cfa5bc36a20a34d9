"""The demo practice's own Consents and labelled resources, generated in memory (30 patients)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from fhirgate.core.policy.consent import ConsentQuery, ConsentSet
from fhirgate.core.policy.labels import SENSITIVE_DEFAULT, label_decision, labels_of
from fhirgate.demo.generator import OPTOUT_PATIENTS, PracticeGenerator

TODAY = dt.date(2025, 6, 30)
SUD = frozenset({"R", "ETH", "42CFRPart2", "NORDSCLCD"})


@pytest.fixture(scope="module")
def practice() -> tuple[list[dict[str, Any]], PracticeGenerator]:
    gen = PracticeGenerator(patients=30, seed=20250630, today=TODAY)
    return [r for batch in gen.batches() for r in batch], gen


@pytest.fixture(scope="module")
def consents(practice: tuple[list[dict[str, Any]], PracticeGenerator]) -> ConsentSet:
    resources, _ = practice
    return ConsentSet.from_resources(r for r in resources if r["resourceType"] == "Consent")


def patient_of(resource: dict[str, Any]) -> str | None:
    for key in ("subject", "patient", "beneficiary"):
        ref = resource.get(key)
        if isinstance(ref, dict) and str(ref.get("reference", "")).startswith("Patient/"):
            return str(ref["reference"]).removeprefix("Patient/")
    return None


def clinical(resources: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for r in resources:
        pid = patient_of(r)
        if pid is not None and r["resourceType"] != "Consent":
            yield pid, r


def q(resource: dict[str, Any], purpose: str = "TREAT", actor: str = "Practitioner/pr-x") -> ConsentQuery:
    return ConsentQuery(
        resource_type=resource["resourceType"],
        labels=labels_of(resource),
        resource_ref=f"{resource['resourceType']}/{resource['id']}",
        actor_refs=frozenset({actor, "Organization/org-riverbend"}),
        purpose=purpose,
        now=TODAY,
    )


def test_demo_consents_all_compile(consents: ConsentSet) -> None:
    assert consents.ignored == []
    assert consents.patients_with_unreadable() == frozenset()


def test_optout_patients_are_opted_out(
    practice: tuple[list[dict[str, Any]], PracticeGenerator], consents: ConsentSet
) -> None:
    resources, gen = practice
    expected = {f"pat-{i:06d}" for i in OPTOUT_PATIENTS}
    assert set(gen.summary.optout_patient_ids) == expected
    assert consents.patients_opted_out(TODAY) == expected
    for pid in expected:
        d = consents.opted_out(pid, TODAY)
        assert (d.allowed, d.reason) == (False, "consent.optout")
        assert "policyRule OPTOUT" in d.detail
    others = {p for p, _ in clinical(resources)} - expected
    assert others
    assert all(consents.opted_out(p, TODAY).allowed for p in others)
    # every resource of an opted-out patient is refused, whatever the purpose
    for pid, r in clinical(resources):
        if pid in expected:
            assert consents.evaluate(pid, q(r, "HOPERAT")).reason == "consent.optout"


def test_part2_consent_denies_sud_records(
    practice: tuple[list[dict[str, Any]], PracticeGenerator], consents: ConsentSet
) -> None:
    resources, _ = practice
    part2 = {p for p in consents.patients_with_rules() if "42CFRPart2" in consents.directives(p)[0].policy}
    assert part2, "the 30-patient demo should contain a 42 CFR Part 2 consent"
    sud_seen = plain_seen = 0
    for pid, r in clinical(resources):
        if pid not in part2:
            continue
        labels = labels_of(r)
        if labels >= SUD:
            sud_seen += 1
            d = consents.evaluate(pid, q(r, "TREAT"))
            assert (d.allowed, d.reason) == (False, "consent.deny.label"), d.detail
            assert "42CFRPart2" in d.detail
            for pou in ("HRESCH", "HPAYMT", "CLMATTCH"):  # the explicit deny provision (and its specialisations)
                d = consents.evaluate(pid, q(r, pou))
                assert (d.allowed, d.reason) == (False, "consent.deny.label")
                assert "provision denies: security label ETH" in d.detail
        elif not labels:
            plain_seen += 1
            assert consents.evaluate(pid, q(r, "TREAT")).reason == "consent.none"
    assert sud_seen and plain_seen


def test_patients_without_consent_are_untouched(
    practice: tuple[list[dict[str, Any]], PracticeGenerator], consents: ConsentSet
) -> None:
    resources, _ = practice
    ruled = consents.patients_with_rules()
    checked = 0
    for pid, r in clinical(resources):
        if pid not in ruled:
            checked += 1
            assert consents.evaluate(pid, q(r)).reason == "consent.none"
    assert checked > 100


def test_demo_labels_are_read_and_withheld_by_default(practice: tuple[list[dict[str, Any]], PracticeGenerator]) -> None:
    resources, _ = practice
    kinds = {frozenset(labels_of(r)) for r in resources} - {frozenset()}
    assert SUD in kinds
    assert frozenset({"R", "HIV"}) in kinds
    assert frozenset({"R", "PSY"}) in kinds
    for r in resources:
        labels = labels_of(r)
        declared = {c.get("code") for c in r.get("meta", {}).get("security", [])}
        assert labels == declared  # every demo label is from a known system
        d = label_decision(labels, SENSITIVE_DEFAULT, frozenset())
        assert d.allowed == (not labels)
