"""Role resolution, purposes, labels, tools and field projections of the default policy, with break attempts."""

from __future__ import annotations

from typing import Any

import pytest

from fhirgate.core.fhir.compact import SUBSETTED_SYSTEM
from fhirgate.core.policy.rules import FieldRule, Policy, Role
from fhirgate.core.policy.rules_parse import parse_policy
from fhirgate.errors import InvalidInput
from fhirgate.policy_loader import load_policy


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(None)


# ---- resolve_role ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claimed", "fhir_user", "patient_ctx", "role", "reason"),
    [
        # no claim: derived from fhirUser / context
        (None, "Practitioner", False, "clinician", "role.resolved"),
        (None, "PractitionerRole", False, "clinician", "role.resolved"),
        (None, "Patient", False, "patient", "role.resolved"),
        (None, "Patient", True, "patient", "role.resolved"),
        (None, None, True, "patient", "role.resolved"),
        (None, "RelatedPerson", True, "patient", "role.resolved"),
        (None, None, False, "practice_staff", "role.resolved"),  # default_role
        (None, "RelatedPerson", False, None, "role.unresolved"),
        (None, "Person", False, None, "role.unresolved"),
        (None, "Device", False, None, "role.unresolved"),
        # claims
        ("billing", "Practitioner", False, "billing", "role.resolved"),
        ("front_desk", None, False, "front_desk", "role.resolved"),
        ("patient", "Patient", False, "patient", "role.resolved"),
        ("patient", None, True, "patient", "role.resolved"),
        # attempts to break it
        ("clinician", None, True, None, "role.patient_context_requires_own_record"),
        ("clinician", "Patient", False, None, "role.patient_context_requires_own_record"),
        ("analyst", "Patient", True, None, "role.patient_context_requires_own_record"),
        ("patient", "Practitioner", False, None, "role.own_record_requires_patient"),
        ("patient", None, False, None, "role.own_record_requires_patient"),
        (None, "Practitioner", True, None, "role.context_conflict"),
        ("patient", "Practitioner", True, None, "role.context_conflict"),
        ("superuser", "Practitioner", False, None, "role.unknown"),
        ("Clinician", None, False, None, "role.unknown"),
        ("", None, False, None, "role.invalid_claim"),
        (["clinician"], None, False, None, "role.invalid_claim"),
        ({"role": "clinician"}, None, False, None, "role.invalid_claim"),
        (1, None, False, None, "role.invalid_claim"),
        (True, None, False, None, "role.invalid_claim"),
    ],
)
def test_resolve_role(
    policy: Policy, claimed: object, fhir_user: str | None, patient_ctx: bool, role: str | None, reason: str
) -> None:
    got, decision = policy.resolve_role(claimed, fhir_user, patient_ctx)
    assert decision.reason == reason, decision.detail
    assert (got.name if got else None) == role
    assert bool(decision) is (role is not None)


def test_unresolved_without_default_role_is_refused() -> None:
    strict = parse_policy(
        {
            "roles": {
                "clinician": {"access": "care-team", "resource_types": "*", "purposes": ["TREAT"]},
                "patient": {"access": "own-record", "resource_types": "*", "purposes": ["PATRQT"]},
            }
        },
        "strict",
    )
    role, decision = strict.resolve_role(None, None, False)
    assert role is None and decision.reason == "role.unresolved"
    assert "fhirgate_role" in decision.detail


def test_unknown_claim_detail_names_defined_roles_but_not_garbage(policy: Policy) -> None:
    _, decision = policy.resolve_role("superuser", None, False)
    assert "defined: analyst, billing, clinician, compliance, front_desk, patient" in decision.detail
    _, decision = policy.resolve_role("<script>alert(1)</script>", None, False)
    assert "<script>" not in decision.detail and "(invalid value)" in decision.detail


def test_role_lookup_raises_invalid_input_naming_roles(policy: Policy) -> None:
    with pytest.raises(InvalidInput) as info:
        policy.role("root")
    assert info.value.param == "role" and "clinician" in (info.value.allowed or "")
    with pytest.raises(InvalidInput):
        policy.role(None)  # type: ignore[arg-type]


# ---- purposes ----------------------------------------------------------------------------------------------


def test_purpose_default_allowed_and_refused(policy: Policy) -> None:
    clinician = policy.role("clinician")
    d = clinician.purpose_for(())
    assert d.allowed and d.reason == "purpose.default" and "TREAT" in d.detail
    assert clinician.purpose_for(("ETREAT",)).reason == "purpose.allowed"
    assert clinician.purpose_for(("TREAT", "ETREAT")).allowed
    refused = clinician.purpose_for(("TREAT", "HMARKT"))
    assert not refused and refused.reason == "purpose.not_allowed"
    assert "'HMARKT'" in refused.detail and "allowed: TREAT, ETREAT" in refused.detail
    assert not policy.role("billing").purpose_for(("TREAT",))
    assert not policy.role("analyst").purpose_for(("HMARKT",))  # marketing is nobody's purpose by default


# ---- labels ------------------------------------------------------------------------------------------------

LABEL_CASES = [
    # role, label, purpose, break_glass, allowed, reason
    ("clinician", "N", "TREAT", False, True, "label.not_sensitive"),
    ("clinician", "NORDSCLCD", "TREAT", False, True, "label.not_sensitive"),
    ("clinician", "R", "TREAT", False, False, "label.not_allowed_for_role"),
    ("clinician", "PSY", "TREAT", False, False, "label.not_allowed_for_role"),
    ("clinician", "PSY", "TREAT", True, True, "label.break_glass"),
    ("clinician", "42CFRPart2", "ETREAT", True, True, "label.break_glass"),
    ("clinician", "V", "TREAT", True, False, "label.not_allowed_for_role"),
    ("clinician", "PSY", "HPAYMT", True, False, "purpose.not_allowed"),
    ("front_desk", "HIV", "HOPERAT", True, False, "label.not_allowed_for_role"),  # no break-glass for the role
    ("analyst", "ETH", "HRESCH", False, False, "label.not_allowed_for_role"),
    ("patient", "PSY", "PATRQT", False, True, "label.allowed_for_role"),
    ("patient", "PSY", "PWATRNY", False, True, "label.allowed_for_role"),
    ("patient", "PSY", "FAMRQT", False, False, "label.not_allowed_for_purpose"),
    ("patient", "SDV", "PATRQT", False, False, "label.not_allowed_for_role"),
    ("patient", "V", "PATRQT", True, False, "label.not_allowed_for_role"),
    ("patient", "R", "TREAT", False, False, "purpose.not_allowed"),
]


@pytest.mark.parametrize(("role", "label", "purpose", "bg", "allowed", "reason"), LABEL_CASES)
def test_may_see_label(
    policy: Policy, role: str, label: str, purpose: str, bg: bool, allowed: bool, reason: str
) -> None:
    d = policy.may_see_label(policy.role(role), label, purpose, bg)
    assert (d.allowed, d.reason) == (allowed, reason), d.detail


def test_role_level_label_check_treats_unknown_codes_as_sensitive(policy: Policy) -> None:
    clinician = policy.role("clinician")
    assert clinician.may_see_label("M", "TREAT", False).allowed
    assert not clinician.may_see_label("SOMETHING", "TREAT", True).allowed  # fail closed at role level
    assert "without break-glass" in clinician.may_see_label("HIV", "TREAT", False).detail


def test_sensitive_purposes_empty_means_any_role_purpose() -> None:
    role = Role("r", "", "practice", None, ("HOPERAT", "HPAYMT"), sensitive=frozenset({"HIV"}))
    assert role.may_see_label("HIV", "HPAYMT", False).allowed
    assert not role.may_see_label("HIV", "TREAT", False).allowed


def test_break_glass_needs_the_role_flag() -> None:
    role = Role("r", "", "care-team", None, ("TREAT",), break_glass=False, break_glass_sensitive=frozenset({"R"}))
    assert not role.may_see_label("R", "TREAT", True).allowed


# ---- types, tools ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "rtype", "allowed"),
    [
        ("front_desk", "Condition", False),
        ("front_desk", "Observation", False),
        ("front_desk", "Appointment", True),
        ("billing", "Claim", True),
        ("billing", "DiagnosticReport", False),
        ("clinician", "Claim", False),
        ("clinician", "Condition", True),
        ("compliance", "Observation", False),
        ("patient", "Invoice", True),
    ],
)
def test_allows_type(policy: Policy, role: str, rtype: str, allowed: bool) -> None:
    d = policy.role(role).allows_type(rtype)
    assert d.allowed is allowed
    assert d.reason == ("role.type_allowed" if allowed else "role.type_not_allowed")


def test_refusals_name_what_is_allowed(policy: Policy) -> None:
    d = policy.role("front_desk").allows_type("Condition")
    assert "'Condition'" in d.detail and "Appointment" in d.detail
    t = policy.role("analyst").allows_tool("grep_record")
    assert t.reason == "role.tool_not_allowed" and "query_sql" in t.detail
    assert policy.role("patient").allows_tool("patient_summary").reason == "role.tool_allowed"
    assert not policy.role("patient").allows_tool("audit_disclosures")
    assert policy.role("patient").allows_tool("query_sql")  # confined to their own rows by the views


def test_rate_for_role_override() -> None:
    data: dict[str, Any] = {
        "roles": {
            "clinician": {
                "access": "care-team",
                "resource_types": "*",
                "purposes": ["TREAT"],
                "rate": {"capacity": 10, "refill_per_second": 0.5},
            },
            "patient": {"access": "own-record", "resource_types": "*", "purposes": ["PATRQT"]},
        },
        "rate_limits": {"capacity": 30, "refill_per_second": 2, "costs": {"query_sql": 4}},
    }
    p = parse_policy(data, "t")
    assert p.rate_for(p.role("clinician")).capacity == 10 and p.rate_for(p.role("patient")).capacity == 30
    assert p.tool_cost("query_sql") == 4 and p.tool_cost("anything") == 1


# ---- FieldRule.apply ---------------------------------------------------------------------------------------

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "meta": {"security": [{"code": "R"}], "tag": [{"system": "x", "code": "y"}]},
    "text": {"status": "generated", "div": "<div/>"},
    "name": [{"family": "Doe"}],
    "birthDate": "1970-01-01",
    "_birthDate": {"extension": []},
    "maritalStatus": {"text": "M"},
    "extension": [{"url": "race"}],
    "modifierExtension": [{"url": "m"}],
}


def test_front_desk_projection_keeps_identity_and_reports_omitted(policy: Policy) -> None:
    rule = policy.role("front_desk").field_rule("Patient")
    assert rule is not None
    out, omitted = rule.apply(PATIENT)
    assert out["id"] == "p1" and out["resourceType"] == "Patient" and out["modifierExtension"]
    assert out["meta"]["security"] == [{"code": "R"}]
    assert {"system": SUBSETTED_SYSTEM, "code": "SUBSETTED", "display": "subsetted"} in out["meta"]["tag"]
    assert {"system": "x", "code": "y"} in out["meta"]["tag"]
    assert "_birthDate" in out and out["name"] == PATIENT["name"]
    assert omitted == ("extension", "maritalStatus", "text")
    assert PATIENT["meta"]["tag"] == [{"system": "x", "code": "y"}]  # input untouched


def test_exclude_rule_and_no_op() -> None:
    out, omitted = FieldRule(exclude=frozenset({"birthDate"})).apply(PATIENT)
    assert "birthDate" not in out and "_birthDate" not in out and omitted == ("birthDate",)
    same, none = FieldRule().apply(PATIENT)
    assert same == PATIENT and none == ()


def test_empty_include_keeps_only_always_kept() -> None:
    out, _ = FieldRule(include=frozenset()).apply(PATIENT)
    assert set(out) == {"resourceType", "id", "meta", "modifierExtension"}


def test_type_rule_replaces_star_default(policy: Policy) -> None:
    billing = policy.role("billing")
    assert billing.field_rule("Claim") == billing.fields["*"]
    assert billing.field_rule("Patient") is billing.fields["Patient"]
    assert policy.role("clinician").field_rule("Patient") is None


def test_front_desk_appointment_hides_reasons(policy: Policy) -> None:
    appt = {
        "resourceType": "Appointment",
        "id": "a",
        "status": "booked",
        "reasonCode": [{"text": "x"}],
        "description": "d",
        "participant": [{"status": "accepted"}],
    }
    rule = policy.role("front_desk").field_rule("Appointment")
    assert rule is not None
    out, omitted = rule.apply(appt)
    assert omitted == ("description", "reasonCode") and out["status"] == "booked"


def test_hand_built_policy_with_dangling_reference_refuses() -> None:
    policy = Policy(source="hand", roles={})
    role, decision = policy.resolve_role(None, "Practitioner", False)
    assert role is None and decision.reason == "role.unresolved"


def test_visible_labels_agrees_with_may_see_label(policy: Policy) -> None:
    from fhirgate.core.policy.rules import PURPOSES

    for role in policy.roles.values():
        for purpose in sorted(PURPOSES):
            for bg in (False, True):
                visible = role.visible_labels(purpose, bg)
                for label in sorted(policy.sensitive_labels):
                    assert (label in visible) is role.may_see_label(label, purpose, bg).allowed, (role.name, label)
    assert policy.role("clinician").visible_labels("TREAT", True) == policy.role("clinician").break_glass_sensitive
    assert policy.role("clinician").visible_labels("TREAT", False) == frozenset()
