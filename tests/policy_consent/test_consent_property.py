"""Property: a deny provision on security label X never releases a resource carrying X, except to an access that a
nested permit provision explicitly matches (by actor and purpose)."""

from __future__ import annotations

from typing import Any

from consent_builders import NOW, actor, consent, label, prov, purpose, query
from hypothesis import given, settings
from hypothesis import strategies as st

from fhirgate.core.policy.consent import ConsentSet, purpose_lineage

SENSITIVE = ["ETH", "HIV", "PSY", "GDIS", "STD", "SDV", "SEX", "BH", "42CFRPart2", "R", "V"]
OTHER_LABELS = ["N", "NORDSCLCD", "HIV", "PSY", "ETH"]
ACTORS = ["Practitioner/pr-1", "Practitioner/pr-2", "Organization/org-1", "PractitionerRole/role-1"]
PURPOSES = ["TREAT", "ETREAT", "BTG", "HPAYMT", "CLMATTCH", "HRESCH", "CLINTRCH", "HOPERAT", "HMARKT", "PUBHLTH"]
TYPES = ["Condition", "Observation", "Encounter", "DocumentReference"]

permits = st.lists(
    st.tuples(st.sampled_from([*ACTORS, None]), st.sampled_from([*PURPOSES, None])), max_size=3
)  # (actor condition, purpose condition) of each nested permit; None = no condition
deny_extras = st.fixed_dictionaries(
    {},
    optional={
        "purpose": st.lists(st.sampled_from(PURPOSES), min_size=1, max_size=2),
        "actor": st.lists(st.sampled_from(ACTORS), min_size=1, max_size=2),
        "class": st.lists(st.sampled_from(TYPES), min_size=1, max_size=2),
    },
)


def build(x: str, extras: dict[str, list[str]], nested: list[tuple[str | None, str | None]]) -> dict[str, Any]:
    children = []
    for who, why in nested:
        cond: dict[str, Any] = {}
        if who:
            cond["actor"] = [actor(who)]
        if why:
            cond["purpose"] = [purpose(why)]
        children.append(prov("permit", **cond))
    cond = {"securityLabel": [label(x)]}
    if "purpose" in extras:
        cond["purpose"] = [purpose(p) for p in extras["purpose"]]
    if "actor" in extras:
        cond["actor"] = [actor(a) for a in extras["actor"]]
    if "class" in extras:
        cond["class_"] = [{"system": "http://hl7.org/fhir/resource-types", "code": t} for t in extras["class"]]
    return consent(prov("deny", *children, **cond), policy=None)


def deny_applies(extras: dict[str, list[str]], who: set[str], why: str, rtype: str) -> bool:
    """Our oracle for the deny's other (non-label) conditions; an unknown actor (empty `who`) is matched."""
    return (
        ("purpose" not in extras or any(p in purpose_lineage(why) for p in extras["purpose"]))
        and ("actor" not in extras or not who or bool(set(extras["actor"]) & who))
        and ("class" not in extras or rtype in extras["class"])
    )


def explicitly_permitted(nested: list[tuple[str | None, str | None]], who: set[str], why: str) -> bool:
    return any((a is None or a in who) and (p is None or p in purpose_lineage(why)) for a, p in nested)


@settings(max_examples=400, deadline=None)
@given(
    x=st.sampled_from(SENSITIVE),
    others=st.sets(st.sampled_from(OTHER_LABELS), max_size=3),
    extras=deny_extras,
    nested=permits,
    who=st.sets(st.sampled_from(ACTORS), max_size=3),
    why=st.sampled_from(PURPOSES),
    rtype=st.sampled_from(TYPES),
    optin=st.booleans(),
)
def test_label_deny_only_yields_to_explicit_nested_permit(
    x: str,
    others: set[str],
    extras: dict[str, list[str]],
    nested: list[tuple[str | None, str | None]],
    who: set[str],
    why: str,
    rtype: str,
    optin: bool,
) -> None:
    resources = [build(x, extras, nested)]
    if optin:  # a second, broadly permissive Consent for the same patient must not weaken the deny
        resources.append(consent(policy="OPTIN", cid="c-optin", when="2025-01-01"))
    cs = ConsentSet.from_resources(resources)
    labels = {x} | others
    d = cs.evaluate("p1", query(labels=labels, actor_refs=who, purpose=why, resource_type=rtype, now=NOW))
    if d.allowed and deny_applies(extras, who, why, rtype):
        assert explicitly_permitted(nested, who, why), (d, labels)
    if deny_applies(extras, who, why, rtype) and not explicitly_permitted(nested, who, why):
        assert not d.allowed
        assert d.reason.startswith("consent.deny.")
    if deny_applies(extras, who, why, rtype) and explicitly_permitted(nested, who, why):
        assert d.allowed  # consent.permit, or consent.none when an unknown actor left the deny itself unsettled
        assert d.reason in ("consent.permit", "consent.none")
    if not deny_applies(extras, who, why, rtype):
        assert (d.allowed, d.reason) == (True, "consent.permit" if optin else "consent.none")
