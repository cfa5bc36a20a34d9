"""Nested provisions (exceptions to their parent) and several Consents for one patient."""

from __future__ import annotations

from datetime import date

from consent_builders import NOW, actor, consent, label, prov, purpose, query

from fhirgate.core.policy.consent import ConsentSet


def decide(*consents: dict[str, object], **q: object) -> tuple[bool, str]:
    d = ConsentSet.from_resources(list(consents)).evaluate("p1", query(**q))
    return d.allowed, d.reason


def test_permit_inside_deny() -> None:
    c = consent(prov("deny", prov("permit", actor=[actor("Practitioner/pr-1")]), securityLabel=[label("ETH")]))
    assert decide(c, labels={"R", "ETH"}) == (True, "consent.permit")
    assert decide(c, labels={"R", "ETH"}, actor_refs={"Practitioner/pr-2"}) == (False, "consent.deny.label")
    assert decide(c, labels={"HIV"}) == (True, "consent.none")  # the deny does not apply, so neither does the permit


def test_deny_inside_permit_under_optout() -> None:
    c = consent(
        prov("permit", prov("deny", securityLabel=[label("HIV")]), actor=[actor("Practitioner/pr-1")]), policy="OPTOUT"
    )
    assert decide(c) == (True, "consent.permit")
    assert decide(c, labels={"R", "HIV"}) == (False, "consent.deny.label")
    assert decide(c, actor_refs={"Practitioner/pr-2"}) == (False, "consent.deny.all")
    assert ConsentSet.from_resources([c]).opted_out("p1", NOW).reason == "consent.rules"


def test_three_levels() -> None:
    c = consent(prov("deny", prov("permit", prov("deny", securityLabel=[label("PSY")]), purpose=[purpose("TREAT")])))
    assert decide(c) == (True, "consent.permit")
    assert decide(c, purpose="ETREAT") == (True, "consent.permit")
    assert decide(c, labels={"R", "PSY"}) == (False, "consent.deny.label")
    assert decide(c, purpose="HPAYMT") == (False, "consent.deny.all")
    cs = ConsentSet.from_resources([c])
    assert cs.opted_out("p1", NOW).allowed  # it has a permit: not a full opt-out
    assert cs.patients_opted_out(NOW) == frozenset()


def test_sibling_deny_wins_over_sibling_permit() -> None:
    c = consent(
        prov("deny", prov("permit", actor=[actor("Practitioner/pr-1")]), prov("deny", purpose=[purpose("HMARKT")]))
    )
    assert decide(c) == (True, "consent.permit")
    assert decide(c, purpose="HMARKT") == (False, "consent.deny.purpose")


def test_expired_nested_permit_no_longer_applies() -> None:
    c = consent(prov("deny", prov("permit", actor=[actor("Practitioner/pr-1")], period={"end": "2024-12-31"})))
    assert decide(c, now=date(2024, 6, 1)) == (True, "consent.permit")
    assert decide(c) == (False, "consent.deny.all")


def test_untyped_nested_inherits_parent_type() -> None:
    c = consent(
        prov("deny", prov(None, actor=[actor("Practitioner/pr-1")]), securityLabel=[label("ETH")]), policy="OPTIN"
    )
    assert decide(c, labels={"ETH"}) == (False, "consent.deny.actor")  # the deepest matching provision names it
    assert decide(c, labels={"ETH"}, actor_refs={"Practitioner/pr-2"}) == (False, "consent.deny.label")
    assert decide(c) == (True, "consent.permit")


def test_permit_must_cover_every_caught_sensitivity_label() -> None:
    c = consent(
        prov(
            "deny",
            prov("permit", securityLabel=[label("ETH")], actor=[actor("Practitioner/pr-1")]),
            securityLabel=[label("ETH"), label("HIV")],
        )
    )
    assert decide(c, labels={"R", "ETH", "42CFRPart2"}) == (True, "consent.permit")
    assert decide(c, labels={"ETH", "HIV"}) == (False, "consent.deny.label")  # ETH permit does not release HIV
    assert decide(c, labels={"HIV"}) == (False, "consent.deny.label")


def test_confidentiality_is_not_a_caught_category() -> None:
    c = consent(prov("deny", prov("permit", securityLabel=[label("ETH")]), securityLabel=[label("R")]))
    assert decide(c, labels={"R", "ETH"}) == (True, "consent.permit")
    assert decide(c, labels={"R", "PSY"}) == (False, "consent.deny.label")


def test_permit_confidentiality_high_water_mark() -> None:
    c = consent(prov("permit", securityLabel=[label("R")]), policy="OPTOUT")
    assert decide(c, labels={"N"}) == (True, "consent.permit")
    assert decide(c, labels={"R", "PSY"}) == (True, "consent.permit")
    assert decide(c, labels={"V"}) == (False, "consent.deny.all")
    assert decide(c) == (False, "consent.deny.all")  # unlabelled data is not matched by a permit's label


def test_unsettled_permit_does_not_apply_but_unsettled_deny_does() -> None:
    group_permit = consent(prov("deny", prov("permit", actor=[actor("Group/nurses")])))
    assert decide(group_permit) == (False, "consent.deny.all")
    group_deny = consent(prov("permit", prov("deny", actor=[actor("Group/nurses")])), policy="OPTOUT")
    assert decide(group_deny) == (False, "consent.deny.actor")


# ---- several Consents for one patient -------------------------------------------------------------------------


def test_deny_wins_over_newer_optin() -> None:
    old_out = consent(policy="OPTOUT", cid="old", when="2020-01-01")
    new_in = consent(policy="OPTIN", cid="new", when="2024-01-01")
    cs = ConsentSet.from_resources([new_in, old_out])
    d = cs.evaluate("p1", query())
    assert (d.allowed, d.reason) == (False, "consent.optout")
    assert "Consent/old" in d.detail
    assert [x.id for x in cs.directives("p1")] == ["new", "old"]  # most recent first


def test_deny_wins_between_label_deny_and_permit() -> None:
    permit = consent(policy="OPTIN", cid="a")
    deny = consent(prov("deny", securityLabel=[label("PSY")]), cid="b", when="2019-01-01")
    assert decide(permit, deny, labels={"PSY"}) == (False, "consent.deny.label")
    assert decide(permit, deny) == (True, "consent.permit")


def test_inactive_optout_is_listed_not_applied() -> None:
    cs = ConsentSet.from_resources([consent(policy="OPTOUT", status="inactive"), consent(cid="c2", policy="OPTIN")])
    assert cs.opted_out("p1", NOW).allowed
    assert cs.ignored == [("c1", "status inactive")]
    assert cs.patients_with_unreadable() == frozenset()


def test_expired_and_future_optout() -> None:
    expired = consent(prov("deny", period={"start": "2019-01-01", "end": "2020-12-31"}))
    future = consent(prov("deny", period={"start": "2030-01-01"}), patient="p2", cid="c2")
    cs = ConsentSet.from_resources([expired, future])
    assert cs.opted_out("p1", NOW).allowed
    assert not cs.opted_out("p1", date(2020, 6, 1)).allowed
    assert cs.opted_out("p2", NOW).allowed
    assert cs.patients_opted_out(NOW) == frozenset()
    assert cs.patients_opted_out(date(2030, 1, 1)) == {"p2"}
    # without a date every opt-out counts (fail closed)
    assert cs.patients_opted_out() == {"p1", "p2"}
    assert cs.opted_out("p1").reason == "consent.optout"
    assert decide(expired) == (True, "consent.none")


def test_patients_with_rules_and_opted_out() -> None:
    cs = ConsentSet.from_resources(
        [
            consent(policy="OPTOUT", patient="a", cid="c-a"),
            consent(prov("deny", securityLabel=[label("ETH")]), patient="b", cid="c-b"),
            consent(prov("deny"), patient="c", cid="c-c", status="rejected"),
        ]
    )
    assert cs.patients_with_rules() == {"a", "b"}
    assert cs.patients_opted_out(NOW) == {"a"}
    assert cs.opted_out("b", NOW).reason == "consent.rules"
    assert cs.opted_out("zzz", NOW).reason == "consent.none"
