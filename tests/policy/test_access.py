"""Access policy decision tables: plan_access and authorize_resource, including attacks."""

from __future__ import annotations

import pytest

from fhirgate.core.fhir.indexing import IndexRows
from fhirgate.core.policy.access import (
    AccessPlan,
    authorize_resource,
    plan_access,
    required_scope_hint,
)
from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.scopes import ScopeSet
from fhirgate.errors import InvalidInput

CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
LAB = f"{CAT}|laboratory"
VITAL = f"{CAT}|vital-signs"


def who(scope: str, *, patient: str | None = None, fhir_user: str | None = None) -> Principal:
    return Principal(sub="u1", issuer="iss", scopes=ScopeSet.parse(scope), patient=patient, fhir_user=fhir_user)


def obs(patients: list[str], category: str | None = "laboratory", system: str | None = CAT) -> IndexRows:
    rows = IndexRows(patients=list(patients))
    if category is not None:
        rows.token.append(("category", system, category))
    rows.token.append(("code", "http://loinc.org", "718-7"))
    rows.reference.append(("subject", "Patient", patients[0] if patients else None, "Patient/x"))
    return rows


def patient_rows(pid: str) -> IndexRows:
    return IndexRows(patients=[pid], token=[("gender", "http://hl7.org/fhir/administrative-gender", "female")])


# ---------------------------------------------------------------- plan_access

# (scope, patient claim, fhirUser, type, interaction, allowed, reason, compartment, constraint_sets, scope field)
PLAN_TABLE = [
    ("patient/Observation.rs", "p1", None, "Observation", "s", True, "scope.granted", "p1", (), None),
    ("patient/Observation.rs", "p1", None, "Observation", "r", True, "scope.granted", "p1", (), None),
    ("patient/Observation.r", "p1", None, "Observation", "s", False, "scope.missing", None, (), None),
    ("patient/Observation.rs", "p1", None, "Condition", "s", False, "scope.missing", None, (), None),
    ("patient/*.rs", "p1", None, "Condition", "s", True, "scope.granted", "p1", (), "patient/*.rs"),
    # patient/ scope but no patient in context: deny
    ("patient/Observation.rs", None, None, "Observation", "s", False, "context.no_patient", None, (), None),
    ("launch/patient patient/*.read", None, None, "Observation", "r", False, "context.no_patient", None, (), None),
    # practice-wide
    ("user/Observation.rs", None, "Practitioner/9", "Observation", "s", True, "scope.granted", None, (), None),
    ("system/*.rs", None, None, "Encounter", "s", True, "scope.granted", None, (), None),
    ("user/*.cruds", None, None, "Observation", "s", True, "scope.granted", None, (), None),
    # a user/ principal who is a Patient stays in their own compartment
    ("user/*.rs", None, "Patient/p7", "Observation", "s", True, "scope.granted.fhiruser_patient", "p7", (), None),
    ("user/*.rs", "p1", "Patient/p7", "Observation", "s", True, "scope.granted.fhiruser_patient", "p7", (), None),
    # mixed patient + user: the wide grant is used
    ("patient/Observation.rs user/Observation.rs", "p1", None, "Observation", "s", True, "scope.granted", None, (),
     None),
    ("patient/Observation.rs user/Condition.rs", "p1", None, "Observation", "s", True, "scope.granted", "p1", (), None),
    # v2 constraints: carried, OR across scopes, an unconstrained grant wins
    (f"patient/Observation.rs?category={LAB}", "p1", None, "Observation", "s", True, "scope.granted", "p1",
     ((("category", LAB),),), None),
    (f"patient/Observation.rs?category={LAB} patient/Observation.rs?category={VITAL}", "p1", None, "Observation", "s",
     True, "scope.granted", "p1", ((("category", LAB),), (("category", VITAL),)), None),
    (f"patient/Observation.rs?category={LAB} patient/Observation.rs", "p1", None, "Observation", "s", True,
     "scope.granted", "p1", (), "patient/Observation.rs"),
    (f"patient/Observation.rs?category={LAB}&code=718-7", "p1", None, "Observation", "s", True, "scope.granted", "p1",
     ((("category", LAB), ("code", "718-7")),), None),
    # empty scopes, non-resource scopes only, malformed scopes
    ("", "p1", None, "Observation", "s", False, "scope.missing", None, (), None),
    ("openid fhirUser launch/patient offline_access", "p1", None, "Patient", "r", False, "scope.missing", None, (),
     None),
    ("patient/Observation.sr patient/Observation.rx foo/Observation.rs", "p1", None, "Observation", "s", False,
     "scope.missing", None, (), None),
    # write scope does not grant read
    ("user/Observation.write", None, None, "Observation", "r", False, "scope.missing", None, (), None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("scope", "patient", "fhir_user", "rtype", "letter", "allowed", "reason", "compartment", "sets", "granted"),
    PLAN_TABLE,
)
def test_plan_access_table(
    scope: str,
    patient: str | None,
    fhir_user: str | None,
    rtype: str,
    letter: str,
    allowed: bool,
    reason: str,
    compartment: str | None,
    sets: tuple[object, ...],
    granted: str | None,
) -> None:
    plan = plan_access(who(scope, patient=patient, fhir_user=fhir_user), rtype, letter)
    assert isinstance(plan, AccessPlan)
    assert plan.allowed is allowed
    assert plan.decision.reason == reason
    assert plan.compartment == compartment
    assert plan.constraint_sets == sets
    assert plan.decision.scope
    if granted is not None:
        assert plan.decision.scope == granted
    if allowed:
        assert plan.decision.scope in scope.split()


@pytest.mark.parametrize(
    ("scope", "patient", "expected"),
    [
        ("patient/Condition.rs", "p1", "patient/Observation.rs"),
        ("", "p1", "patient/Observation.rs"),
        ("", None, "user/Observation.rs"),
        ("user/Condition.rs", None, "user/Observation.rs"),
        ("system/Condition.rs", None, "system/Observation.rs"),
        ("patient/Condition.rs user/Condition.rs", "p1", "user/Observation.rs"),
    ],
)
def test_denial_names_needed_scope(scope: str, patient: str | None, expected: str) -> None:
    principal = who(scope, patient=patient)
    plan = plan_access(principal, "Observation", "s")
    assert not plan.allowed
    assert plan.decision.reason == "scope.missing"
    assert plan.decision.scope == expected
    assert required_scope_hint(principal, "Observation", "r") == expected
    assert "Observation" in plan.decision.detail


def test_hint_for_write_uses_the_letter() -> None:
    assert required_scope_hint(who("user/Patient.r"), "Observation", "c") == "user/Observation.c"


def test_no_patient_denial_names_launch_patient() -> None:
    plan = plan_access(who("patient/Observation.rs"), "Observation", "r")
    assert plan.decision.reason == "context.no_patient"
    assert plan.decision.scope is not None
    assert "launch/patient" in plan.decision.scope


@pytest.mark.parametrize(("rtype", "letter"), [("*", "s"), ("observation", "r"), ("", "r"), ("Observation", "x")])
def test_plan_rejects_bad_arguments(rtype: str, letter: str) -> None:
    with pytest.raises(InvalidInput):
        plan_access(who("system/*.*"), rtype, letter)


# ---------------------------------------------------------------- authorize_resource

# (scope, patient claim, fhirUser, type, rows, interaction, allowed, reason)
AUTH_TABLE = [
    # patient compartment
    ("patient/Observation.rs", "p1", None, "Observation", obs(["p1"]), "r", True, "scope.granted"),
    ("patient/Observation.rs", "p1", None, "Observation", obs(["p2"]), "r", False, "compartment.outside"),
    ("patient/Observation.rs", "p1", None, "Observation", obs([]), "s", False, "compartment.outside"),
    ("patient/Observation.rs", "p1", None, "Observation", obs(["p2", "p1"]), "s", True, "scope.granted"),
    ("patient/*.rs", "p1", None, "Patient", patient_rows("p1"), "r", True, "scope.granted"),
    ("patient/*.rs", "p1", None, "Patient", patient_rows("p2"), "r", False, "compartment.outside"),
    ("patient/Observation.rs", None, None, "Observation", obs(["p1"]), "r", False, "context.no_patient"),
    ("patient/Observation.rs", "p1", None, "Condition", obs(["p1"]), "r", False, "scope.missing"),
    ("patient/Observation.s", "p1", None, "Observation", obs(["p1"]), "r", False, "scope.missing"),
    # practice-wide
    ("user/Observation.rs", None, "Practitioner/9", "Observation", obs(["p2"]), "r", True, "scope.granted"),
    ("system/*.rs", None, None, "Observation", obs([]), "s", True, "scope.granted"),
    ("user/*.rs", None, "Patient/p7", "Observation", obs(["p2"]), "r", False, "compartment.outside"),
    ("user/*.rs", None, "Patient/p7", "Observation", obs(["p7"]), "r", True, "scope.granted"),
    # mixed: any admitting scope wins
    ("patient/Observation.rs user/Observation.rs", "p1", None, "Observation", obs(["p9"]), "r", True, "scope.granted"),
    (f"patient/Observation.rs user/Observation.rs?category={LAB}", "p1", None, "Observation",
     obs(["p1"], "vital-signs"), "r", True, "scope.granted"),
    (f"patient/Observation.rs user/Observation.rs?category={LAB}", "p1", None, "Observation",
     obs(["p9"], "vital-signs"), "r", False, "constraint.unmatched"),
    # constraints
    (f"patient/Observation.rs?category={LAB}", "p1", None, "Observation", obs(["p1"]), "r", True, "scope.granted"),
    (f"patient/Observation.rs?category={LAB}", "p1", None, "Observation", obs(["p1"], "vital-signs"), "r", False,
     "constraint.unmatched"),
    (f"patient/Observation.rs?category={LAB}", "p1", None, "Observation", obs(["p1"], None), "r", False,
     "constraint.unmatched"),
    # same code in another system does not match system|code
    (f"patient/Observation.rs?category={LAB}", "p1", None, "Observation", obs(["p1"], "laboratory", "http://evil"),
     "r", False, "constraint.unmatched"),
    ("patient/Observation.rs?category=laboratory", "p1", None, "Observation", obs(["p1"], "laboratory", "http://x"),
     "r", True, "scope.granted"),
    (f"patient/Observation.rs?category={CAT}|", "p1", None, "Observation", obs(["p1"], "anything"), "r", True,
     "scope.granted"),
    ("patient/Observation.rs?category=|laboratory", "p1", None, "Observation", obs(["p1"]), "r", False,
     "constraint.unmatched"),
    ("patient/Observation.rs?category=|laboratory", "p1", None, "Observation", obs(["p1"], "laboratory", None), "r",
     True, "scope.granted"),
    (f"patient/Observation.rs?category={VITAL},{LAB}", "p1", None, "Observation", obs(["p1"]), "r", True,
     "scope.granted"),
    (f"patient/Observation.rs?category={LAB}&code=http://loinc.org|718-7", "p1", None, "Observation", obs(["p1"]),
     "r", True, "scope.granted"),
    (f"patient/Observation.rs?category={LAB}&code=http://loinc.org|999-9", "p1", None, "Observation", obs(["p1"]),
     "r", False, "constraint.unmatched"),
    # OR across scopes
    (f"patient/Observation.rs?category={VITAL} patient/Observation.rs?category={LAB}", "p1", None, "Observation",
     obs(["p1"]), "s", True, "scope.granted"),
    # constraint + compartment: a lab result of another patient stays out
    (f"patient/Observation.rs?category={LAB}", "p1", None, "Observation", obs(["p2"]), "r", False,
     "compartment.outside"),
    # unsupported constraints fail closed
    ("patient/Observation.rs?subject=Patient/p1", "p1", None, "Observation", obs(["p1"]), "r", False,
     "constraint.unsupported"),
    ("patient/Observation.rs?code:in=http://vs", "p1", None, "Observation", obs(["p1"]), "r", False,
     "constraint.unsupported"),
    # a constraint on `*`: resources lacking the parameter are not admitted
    (f"patient/*.rs?category={LAB}", "p1", None, "Patient", patient_rows("p1"), "r", False, "constraint.unmatched"),
    # empty / non-resource scopes
    ("", "p1", None, "Observation", obs(["p1"]), "r", False, "scope.missing"),
    ("openid fhirUser launch/patient", "p1", None, "Patient", patient_rows("p1"), "r", False, "scope.missing"),
]  # fmt: skip


@pytest.mark.parametrize(("scope", "patient", "fhir_user", "rtype", "rows", "letter", "allowed", "reason"), AUTH_TABLE)
def test_authorize_resource_table(
    scope: str,
    patient: str | None,
    fhir_user: str | None,
    rtype: str,
    rows: IndexRows,
    letter: str,
    allowed: bool,
    reason: str,
) -> None:
    decision = authorize_resource(who(scope, patient=patient, fhir_user=fhir_user), rtype, rows, letter)
    assert decision.allowed is allowed, decision
    assert decision.reason == reason
    assert decision.scope
    if allowed:
        assert decision.scope in scope.split()


def test_constraint_bypass_via_plan_is_caught_by_authorize() -> None:
    """A store that ignored the plan's constraints still cannot leak: the per-resource check refuses."""
    principal = who(f"patient/Observation.rs?category={LAB}", patient="p1")
    plan = plan_access(principal, "Observation", "s")
    assert plan.allowed
    assert plan.constraint_sets == ((("category", LAB),),)
    leaked = obs(["p1"], "social-history")
    assert not authorize_resource(principal, "Observation", leaked, "s")


def test_included_resource_of_other_type_needs_its_own_scope() -> None:
    principal = who("patient/Observation.rs", patient="p1")
    assert not authorize_resource(principal, "Practitioner", IndexRows(), "s")
    assert not authorize_resource(principal, "Patient", patient_rows("p1"), "s")


def test_patient_claim_cannot_be_widened_by_fhir_user() -> None:
    """A Practitioner fhirUser does not lift a patient/ scope out of the compartment."""
    principal = who("patient/*.rs", patient="p1", fhir_user="Practitioner/9")
    assert plan_access(principal, "Observation", "s").compartment == "p1"
    assert not authorize_resource(principal, "Observation", obs(["p2"]), "r")


def test_details_carry_no_values_from_the_resource() -> None:
    principal = who(f"patient/Observation.rs?category={LAB}", patient="p1")
    rows = obs(["p1"], "secret-category-value")
    decision = authorize_resource(principal, "Observation", rows, "r")
    assert not decision
    assert "secret-category-value" not in decision.detail


def test_authorize_rejects_bad_arguments() -> None:
    with pytest.raises(InvalidInput):
        authorize_resource(who("system/*.*"), "*", IndexRows(), "r")
    with pytest.raises(InvalidInput):
        authorize_resource(who("system/*.*"), "Observation", IndexRows(), "read")
