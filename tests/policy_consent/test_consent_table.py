"""Table tests: consent x label x purpose x actor x resource type x period -> allowed/denied with reason code."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from consent_builders import ACT, action, actor, consent, klass, label, prov, purpose, query

from fhirgate.core.policy.consent import ConsentSet

Json = dict[str, Any]

DENY_ETH = prov("deny", securityLabel=[label("ETH")])
SNOMED = "http://snomed.info/sct"


def row(name: str, consents: list[Json], q: dict[str, Any], allowed: bool, reason: str) -> Any:
    return pytest.param(consents, q, allowed, reason, id=name)


TABLE = [
    row("no-consent", [], {}, True, "consent.none"),
    row("root-deny-unconditional", [consent(prov("deny"))], {}, False, "consent.optout"),
    row("optout-policy-no-provision", [consent(policy="OPTOUT")], {}, False, "consent.optout"),
    row("optoute-policy", [consent(prov(period={"start": "2020"}), policy="OPTOUTE")], {}, False, "consent.optout"),
    row("optin-policy", [consent(policy="OPTIN")], {}, True, "consent.permit"),
    row("unknown-policy-no-provision", [consent(policy="XYZ")], {}, True, "consent.none"),
    # labels
    row("deny-eth/eth", [consent(DENY_ETH)], {"labels": {"R", "ETH"}}, False, "consent.deny.label"),
    row("deny-eth/hiv", [consent(DENY_ETH)], {"labels": {"R", "HIV"}}, True, "consent.none"),
    row("deny-eth/unlabelled", [consent(DENY_ETH)], {}, True, "consent.none"),
    row(
        "deny-eth-old-uri",
        [consent(prov("deny", securityLabel=[{"system": "http://hl7.org/fhir/v3/ActCode", "code": "ETH"}]))],
        {"labels": {"ETH"}},
        False,
        "consent.deny.label",
    ),
    row(
        "deny-two-labels-or",
        [consent(prov("deny", securityLabel=[label("ETH"), label("HIV")]))],
        {"labels": {"HIV"}},
        False,
        "consent.deny.label",
    ),
    row(
        "deny-unknown-label-system",
        [consent(prov("deny", securityLabel=[{"system": "http://example.org/tags", "code": "secret"}]))],
        {},
        False,
        "consent.deny.label",
    ),
    # confidentiality high-water mark
    row(
        "deny-R/V", [consent(prov("deny", securityLabel=[label("R")]))], {"labels": {"V"}}, False, "consent.deny.label"
    ),
    row("deny-R/N", [consent(prov("deny", securityLabel=[label("R")]))], {"labels": {"N"}}, True, "consent.none"),
    row("deny-R/none", [consent(prov("deny", securityLabel=[label("R")]))], {}, True, "consent.none"),
    row("deny-N/unlabelled", [consent(prov("deny", securityLabel=[label("N")]))], {}, False, "consent.deny.label"),
    row("deny-V/R", [consent(prov("deny", securityLabel=[label("V")]))], {"labels": {"R"}}, True, "consent.none"),
    # class
    row(
        "deny-class/match",
        [consent(prov("deny", class_=[klass("Observation")]))],
        {"resource_type": "Observation"},
        False,
        "consent.deny.class",
    ),
    row("deny-class/other", [consent(prov("deny", class_=[klass("Observation")]))], {}, True, "consent.none"),
    row(
        "deny-class-bare-code",
        [consent(prov("deny", class_=[{"code": "Condition"}]))],
        {},
        False,
        "consent.deny.class",
    ),
    row(
        "deny-class-profile-unknown",
        [consent(prov("deny", class_=[{"system": "http://example.org/profiles", "code": "Foo"}]))],
        {},
        False,
        "consent.deny.class",
    ),
    # actor
    row(
        "deny-actor/match",
        [consent(prov("deny", actor=[actor("Practitioner/pr-2")]))],
        {"actor_refs": {"Practitioner/pr-2"}},
        False,
        "consent.deny.actor",
    ),
    row("deny-actor/other", [consent(prov("deny", actor=[actor("Practitioner/pr-2")]))], {}, True, "consent.none"),
    row(
        "deny-actor-absolute-url",
        [consent(prov("deny", actor=[actor("https://ehr.example/fhir/Practitioner/pr-1/_history/3")]))],
        {},
        False,
        "consent.deny.actor",
    ),
    row(
        "deny-actor-org", [consent(prov("deny", actor=[actor("Organization/org-1")]))], {}, False, "consent.deny.actor"
    ),
    row("deny-actor-group", [consent(prov("deny", actor=[actor("Group/g-1")]))], {}, False, "consent.deny.actor"),
    row(
        "deny-actor/no-actor-known",
        [consent(prov("deny", actor=[actor("Practitioner/pr-2")]))],
        {"actor_refs": set()},
        False,
        "consent.deny.actor",
    ),
    # purpose (v3-ActReason hierarchy)
    row(
        "deny-research/research",
        [consent(prov("deny", purpose=[purpose("HRESCH")]))],
        {"purpose": "HRESCH"},
        False,
        "consent.deny.purpose",
    ),
    row("deny-research/treat", [consent(prov("deny", purpose=[purpose("HRESCH")]))], {}, True, "consent.none"),
    row(
        "deny-research/clinical-trial-research",
        [consent(prov("deny", purpose=[purpose("HRESCH")]))],
        {"purpose": "CLINTRCH"},
        False,
        "consent.deny.purpose",
    ),
    row(
        "deny-treat/btg",
        [consent(prov("deny", purpose=[purpose("TREAT")]))],
        {"purpose": "BTG"},
        False,
        "consent.deny.purpose",
    ),
    row("deny-etreat/treat", [consent(prov("deny", purpose=[purpose("ETREAT")]))], {}, True, "consent.none"),
    row(
        "deny-purpose-unknown-system",
        [consent(prov("deny", purpose=[{"system": "http://example.org/pou", "code": "X"}]))],
        {},
        False,
        "consent.deny.purpose",
    ),
    # dataPeriod
    row(
        "deny-dataperiod/inside",
        [consent(prov("deny", dataPeriod={"start": "2019-01-01", "end": "2020-12-31"}))],
        {"resource_date": date(2019, 5, 1)},
        False,
        "consent.deny.period",
    ),
    row(
        "deny-dataperiod/outside",
        [consent(prov("deny", dataPeriod={"start": "2019-01-01", "end": "2020-12-31"}))],
        {"resource_date": date(2021, 1, 1)},
        True,
        "consent.none",
    ),
    row(
        "deny-dataperiod/undated",
        [consent(prov("deny", dataPeriod={"start": "2019", "end": "2020"}))],
        {},
        False,
        "consent.deny.period",
    ),
    row(
        "deny-dataperiod-year-precision-end",
        [consent(prov("deny", dataPeriod={"end": "2020"}))],
        {"resource_date": date(2020, 12, 31)},
        False,
        "consent.deny.period",
    ),
    row(
        "deny-dataperiod-local-date-as-written",
        [consent(prov("deny", dataPeriod={"end": "2020-12-31T23:30:00-05:00"}))],
        {"resource_date": date(2021, 1, 1)},
        True,
        "consent.none",
    ),
    row(
        "deny-dataperiod-open-to-9999",
        [consent(prov("deny", dataPeriod={"start": "2020-06", "end": "9999"}))],
        {"resource_date": date(2020, 6, 1)},
        False,
        "consent.deny.period",
    ),
    # provision.period: when the consent is in force
    row("deny-future-period", [consent(prov("deny", period={"start": "2030-01-01"}))], {}, True, "consent.none"),
    row("deny-expired-period", [consent(prov("deny", period={"end": "2020-01-01"}))], {}, True, "consent.none"),
    row(
        "deny-current-period",
        [consent(prov("deny", securityLabel=[label("ETH")], period={"start": "2020", "end": "2030"}))],
        {"labels": {"ETH"}},
        False,
        "consent.deny.label",
    ),
    # action
    row("deny-collect/access", [consent(prov("deny", action=[action("collect")]))], {}, True, "consent.none"),
    row("deny-disclose/access", [consent(prov("deny", action=[action("disclose")]))], {}, False, "consent.deny.action"),
    row("deny-access/access", [consent(prov("deny", action=[action("access")]))], {}, False, "consent.deny.action"),
    # code: needs query.codes; without them a deny applies
    row(
        "deny-code/match",
        [consent(prov("deny", code=[{"coding": [{"system": SNOMED, "code": "66590003"}]}]))],
        {"codes": {f"{SNOMED}|66590003"}},
        False,
        "consent.deny.code",
    ),
    row(
        "deny-code/other",
        [consent(prov("deny", code=[{"coding": [{"system": SNOMED, "code": "66590003"}]}]))],
        {"codes": {f"{SNOMED}|1234"}},
        True,
        "consent.none",
    ),
    row(
        "deny-code/unknown-codes",
        [consent(prov("deny", code=[{"coding": [{"system": SNOMED, "code": "66590003"}]}]))],
        {},
        False,
        "consent.deny.code",
    ),
    # data
    row(
        "deny-data-instance/match",
        [consent(prov("deny", data=[{"meaning": "instance", "reference": {"reference": "Observation/o1"}}]))],
        {"resource_type": "Observation", "resource_ref": "Observation/o1"},
        False,
        "consent.deny.data",
    ),
    row(
        "deny-data-instance/other",
        [consent(prov("deny", data=[{"meaning": "instance", "reference": {"reference": "Observation/o1"}}]))],
        {"resource_type": "Observation", "resource_ref": "Observation/o2"},
        True,
        "consent.none",
    ),
    row(
        "deny-data-dependents/refers",
        [consent(prov("deny", data=[{"meaning": "dependents", "reference": {"reference": "Encounter/e1"}}]))],
        {"resource_ref": "Condition/c9", "references": {"Encounter/e1", "Patient/p1"}},
        False,
        "consent.deny.data",
    ),
    row(
        "deny-data-dependents/unrelated",
        [consent(prov("deny", data=[{"meaning": "dependents", "reference": {"reference": "Encounter/e1"}}]))],
        {"resource_ref": "Condition/c9", "references": {"Patient/p1"}},
        True,
        "consent.none",
    ),
    row(
        "deny-data-related/unknown-graph",
        [consent(prov("deny", data=[{"meaning": "related", "reference": {"reference": "Encounter/e1"}}]))],
        {"resource_ref": "Condition/c9", "references": {"Patient/p1"}},
        False,
        "consent.deny.data",
    ),
    # base policies with provisions
    row(
        "optin+deny-actor/that-actor",
        [consent(prov("deny", actor=[actor("Practitioner/pr-1")]), policy="OPTIN")],
        {},
        False,
        "consent.deny.actor",
    ),
    row(
        "optin+deny-actor/other-actor",
        [consent(prov("deny", actor=[actor("Practitioner/pr-2")]), policy="OPTIN")],
        {},
        True,
        "consent.permit",
    ),
    row(
        "optout+permit/match",
        [consent(prov("permit", actor=[actor("Practitioner/pr-1")], purpose=[purpose("TREAT")]), policy="OPTOUT")],
        {},
        True,
        "consent.permit",
    ),
    row(
        "optout+permit/other-purpose",
        [consent(prov("permit", actor=[actor("Practitioner/pr-1")], purpose=[purpose("TREAT")]), policy="OPTOUT")],
        {"purpose": "HPAYMT"},
        False,
        "consent.deny.all",
    ),
    row(
        "optout+permit/other-actor",
        [consent(prov("permit", actor=[actor("Practitioner/pr-1")]), policy="OPTOUT")],
        {"actor_refs": {"Practitioner/pr-2"}},
        False,
        "consent.deny.all",
    ),
    row(
        "optout+permit-unknown-purpose-system",
        [consent(prov("permit", purpose=[{"system": "http://example.org/pou", "code": "TREAT"}]), policy="OPTOUT")],
        {},
        False,
        "consent.deny.all",
    ),
    row(
        "part2-policy/part2-data",
        [consent(policy="42CFRPart2")],
        {"labels": {"R", "ETH", "42CFRPart2"}},
        False,
        "consent.deny.label",
    ),
    row("part2-policy/eth-without-part2", [consent(policy="42CFRPart2")], {"labels": {"ETH"}}, True, "consent.none"),
    row("part2-policy/other-data", [consent(policy="42CFRPart2")], {}, True, "consent.none"),
    row(
        "part2-policy+permit/permitted-actor",
        [consent(prov("permit", actor=[actor("Practitioner/pr-1")]), policy="42CFRPart2")],
        {"labels": {"42CFRPart2", "ETH"}},
        True,
        "consent.permit",
    ),
    row(
        "part2-policy+permit/other-actor",
        [consent(prov("permit", actor=[actor("Practitioner/pr-1")]), policy="42CFRPart2")],
        {"labels": {"42CFRPart2", "ETH"}, "actor_refs": {"Practitioner/pr-7"}},
        False,
        "consent.deny.label",
    ),
    # scopes other than patient-privacy do not govern access; an absent scope is read as privacy
    row("treatment-scope-ignored", [consent(prov("deny"), scope="treatment")], {}, True, "consent.none"),
    row("research-scope-ignored", [consent(prov("deny"), scope="research")], {}, True, "consent.none"),
    row("absent-scope-honoured", [consent(prov("deny"), scope=None)], {}, False, "consent.optout"),
    # status
    row("inactive-ignored", [consent(prov("deny"), status="inactive")], {}, True, "consent.none"),
    row("draft-ignored", [consent(prov("deny"), status="draft")], {}, True, "consent.none"),
    row("entered-in-error-ignored", [consent(prov("deny"), status="entered-in-error")], {}, True, "consent.none"),
    # other patient's consent does not touch p1
    row("other-patient", [consent(prov("deny"), patient="p2")], {}, True, "consent.none"),
    # a lone Coding where R4 JSON has an array is still read
    row(
        "lone-object-not-array",
        [consent(prov("deny", securityLabel=label("HIV")))],
        {"labels": {"HIV"}},
        False,
        "consent.deny.label",
    ),
    row("lone-object-not-array/other", [consent(prov("deny", securityLabel=label("HIV")))], {}, True, "consent.none"),
    row(
        "policy-code-old-uri",
        [
            consent(policy=None)
            | {"policyRule": {"coding": [{"system": "http://hl7.org/fhir/v3/ActCode", "code": "OPTOUT"}]}}
        ],
        {},
        False,
        "consent.optout",
    ),
    row(
        "policy-from-other-system",
        [consent(policy=None) | {"policyRule": {"coding": [{"system": "http://example.org", "code": "OPTOUT"}]}}],
        {},
        True,
        "consent.none",
    ),
]


@pytest.mark.parametrize(("consents", "q", "allowed", "reason"), TABLE)
def test_table(consents: list[Json], q: dict[str, Any], allowed: bool, reason: str) -> None:
    cs = ConsentSet.from_resources(consents)
    d = cs.evaluate("p1", query(**q))
    assert (d.allowed, d.reason) == (allowed, reason), d.detail
    if consents and d.reason != "consent.none" and consents[0]["patient"]["reference"] == "Patient/p1":
        assert "Consent/c1" in d.detail


def test_detail_names_what_matched_without_phi() -> None:
    cs = ConsentSet.from_resources([consent(prov("deny", securityLabel=[label("ETH"), label("HIV")]))])
    d = cs.evaluate("p1", query(labels={"R", "ETH", "42CFRPart2"}))
    assert d.detail == "Consent/c1 provision denies: security label ETH"
    d = ConsentSet.from_resources([consent(prov("deny", actor=[actor("Practitioner/pr-1")]))]).evaluate("p1", query())
    assert d.detail == "Consent/c1 provision denies: actor Practitioner/pr-1"


def test_patient_id_accepts_reference_form() -> None:
    cs = ConsentSet.from_resources([consent(prov("deny"))])
    assert not cs.evaluate("Patient/p1", query())
    assert not cs.opted_out("Patient/p1")


def test_policy_rule_codes_from_actcode_only() -> None:
    cs = ConsentSet.from_resources([consent(policy="OPTOUT")])
    (directive,) = cs.directives("p1")
    assert directive.policy == {"OPTOUT"}
    assert ACT in consent(policy="OPTOUT")["policyRule"]["coding"][0]["system"]
