"""Parsing and validation of the policy file: the default parses; every mistake gets a precise issue."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest

from fhirgate.core.policy.rules import (
    DEFAULT_SENSITIVE_LABELS,
    KNOWN_TOOLS,
    FieldRule,
    Policy,
    PolicyError,
)
from fhirgate.core.policy.rules_parse import load_policy_text, parse_policy
from fhirgate.errors import ConfigError
from fhirgate.policy_loader import default_policy_text, load_policy


def minimal() -> dict[str, Any]:
    """A small valid policy: a clinician and a patient role."""
    return {
        "roles": {
            "clinician": {"access": "care-team", "resource_types": "*", "purposes": ["TREAT"]},
            "patient": {"access": "own-record", "resource_types": ["Patient", "Observation"], "purposes": ["PATRQT"]},
        }
    }


def issues_of(data: dict[str, Any]) -> tuple[str, ...]:
    with pytest.raises(PolicyError) as info:
        parse_policy(data, "test.toml")
    return info.value.issues


def with_role(**changes: Any) -> dict[str, Any]:
    data = minimal()
    data["roles"]["clinician"].update(changes)
    return data


def test_default_policy_parses_with_seven_roles_and_safe_settings() -> None:
    policy = load_policy(None)
    roles = ["clinician", "practice_staff", "front_desk", "billing", "analyst", "compliance", "patient"]
    assert list(policy.roles) == roles
    assert policy.role_claim == "fhirgate_role"
    assert policy.default_role == "practice_staff"
    staff = policy.role("practice_staff")
    assert staff.access == "practice" and staff.sensitive == frozenset() and not staff.break_glass
    assert not staff.allows_tool("audit_disclosures") and not staff.deidentify
    assert policy.sensitive_labels == DEFAULT_SENSITIVE_LABELS
    assert policy.redis_url is None
    assert policy.tool_cost("query_sql") > 1 and policy.tool_cost("run_report") > 1
    assert policy.tool_cost("whoami") == 1
    clinician = policy.role("clinician")
    assert clinician.access == "care-team" and clinician.sensitive == frozenset()
    assert clinician.break_glass and clinician.break_glass_minutes == 60
    assert "V" not in clinician.break_glass_sensitive and "42CFRPart2" in clinician.break_glass_sensitive
    assert clinician.default_purpose == "TREAT"
    front = policy.role("front_desk")
    assert not front.allows_type("Condition") and front.allows_type("Appointment")
    assert front.field_rule("Appointment") is not None
    assert "reasonCode" in front.field_rule("Appointment").exclude  # type: ignore[union-attr]
    analyst = policy.role("analyst")
    assert analyst.deidentify and not analyst.optout_aggregates and analyst.sensitive == frozenset()
    assert not analyst.allows_tool("find_patients") and analyst.allows_tool("query_sql")
    assert policy.role("compliance").allows_tool("audit_disclosures")
    assert not clinician.allows_tool("audit_disclosures")
    assert policy.role("patient").access == "own-record" and "V" not in policy.role("patient").sensitive


def test_default_policy_grants_no_role_every_sensitive_label_and_no_v_at_all() -> None:
    policy = load_policy(None)
    for role in policy.roles.values():
        assert "V" not in role.sensitive | role.break_glass_sensitive, role.name
        if role.access != "own-record":
            assert role.sensitive == frozenset(), role.name  # sensitive data only by break-glass for staff


def test_text_and_mapping_give_the_same_policy() -> None:
    text = default_policy_text()
    assert load_policy_text(text, "x") == parse_policy(tomllib.loads(text), "x")


def test_minimal_policy_defaults() -> None:
    policy = parse_policy(minimal(), "m")
    assert isinstance(policy, Policy)
    assert policy.default_role is None and policy.practitioner_role == "clinician"
    assert policy.role("clinician").resource_types is None and policy.role("clinician").tools is None
    assert policy.rate_for(policy.role("clinician")) == policy.rate_default


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"access": "everyone"},
            "roles.clinician.access: 'everyone' is not allowed; use one of care-team, practice, own-record",
        ),
        ({"acess": "practice"}, "roles.clinician.acess: unknown key; allowed: description, access,"),
        ({"acess": "practice"}, "did you mean 'access'?"),
        ({"purposes": ["TREAT", "CURIOSITY"]}, "roles.clinician.purposes: 'CURIOSITY' is not a known purpose of use"),
        ({"purposes": []}, "roles.clinician.purposes: must name at least one purpose; the first is the default"),
        ({"purposes": "TREAT"}, "roles.clinician.purposes: must be a list of strings"),
        ({"purposes": ["TREAT", "TREAT"]}, "roles.clinician.purposes: 'TREAT' is listed twice"),
        ({"resource_types": ["Patinet"]}, "roles.clinician.resource_types: 'Patinet' is not a known resource type"),
        ({"resource_types": ["Patinet"]}, "(did you mean 'Patient'?)"),
        (
            {"resource_types": ["ClaimResponse"]},
            "roles.clinician.resource_types: 'ClaimResponse' is a FHIR R4 type fhirgate does not serve",
        ),
        ({"resource_types": ["*", "Patient"]}, "roles.clinician.resource_types: '*' must stand alone"),
        ({"tools": ["whoami", "delete_everything"]}, "roles.clinician.tools: 'delete_everything' is not a known tool"),
        ({"sensitive": ["XYZ"]}, "roles.clinician.sensitive: 'XYZ' is not a known security label"),
        ({"sensitive": ["M"]}, "roles.clinician.sensitive: 'M' is not a sensitive label of this policy"),
        ({"sensitive": ["HIV"], "sensitive_purposes": ["HPAYMT"]}, "roles.clinician.sensitive_purposes: 'HPAYMT'"),
        ({"break_glass": True, "break_glass_minutes": 0}, "roles.clinician.break_glass_minutes: 0 is out of range"),
        ({"break_glass": True, "break_glass_minutes": 1441}, "use 1 to 1440"),
        ({"break_glass": True, "break_glass_minutes": 2.5}, "break_glass_minutes: must be an integer from 1 to 1440"),
        ({"break_glass": "yes"}, "roles.clinician.break_glass: must be true or false"),
        ({"break_glass_sensitive": ["R"]}, "roles.clinician.break_glass_sensitive: has no effect while break_glass"),
        ({"deidentify": 1}, "roles.clinician.deidentify: must be true or false"),
        ({"rate": {"capacity": 0, "refill_per_second": 1}}, "roles.clinician.rate.capacity: 0 is out of range"),
        ({"rate": {"capacity": 5}}, "roles.clinician.rate.refill_per_second: is required"),
        ({"rate": {"capacity": float("nan"), "refill_per_second": 1}}, "roles.clinician.rate.capacity: nan is out of"),
        ({"rate": {"capacity": 10, "refill_per_second": float("inf")}}, "rate.refill_per_second: inf is out of range"),
        ({"rate": {"capacity": True, "refill_per_second": 1}}, "roles.clinician.rate.capacity: must be a number"),
        ({"description": 42}, "roles.clinician.description: must be a string"),
    ],
)
def test_role_issue_text(changes: dict[str, Any], expected: str) -> None:
    found = issues_of(with_role(**changes))
    assert any(expected in issue for issue in found), found


def test_missing_required_role_keys_are_named() -> None:
    data = minimal()
    data["roles"]["clinician"] = {"description": "x"}
    found = issues_of(data)
    for key in ("access", "resource_types", "purposes"):
        assert f"roles.clinician.{key}: is required" in found


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"Claim": {"include": ["totl"]}}, "roles.clinician.fields.Claim.include: 'totl' is not an element of Claim"),
        ({"Claim": {"include": ["totl"]}}, "did you mean 'total'?"),
        ({"Patient": {"exclude": ["id"]}}, "roles.clinician.fields.Patient.exclude: 'id' is always kept"),
        ({"Patient": {"exclude": ["meta"]}}, "'meta' is always kept"),
        ({"Patient": {"include": ["name"], "exclude": ["gender"]}}, "'gender' is not in include, so excluding it"),
        ({"Patient": {"includes": ["name"]}}, "roles.clinician.fields.Patient.includes: unknown key"),
        ({"Patient": {"include": "name"}}, "roles.clinician.fields.Patient.include: must be a list of element names"),
        ({"Patinet": {"include": ["name"]}}, "roles.clinician.fields.Patinet: unknown key"),
        ({"*": {"exclude": ["nonsense"]}}, "'nonsense' is not an element of any resource type the role sees"),
        ({"Patient": ["name"]}, "roles.clinician.fields.Patient: must be a table"),
    ],
)
def test_field_issue_text(fields: dict[str, Any], expected: str) -> None:
    found = issues_of(with_role(fields=fields))
    assert any(expected in issue for issue in found), found


def test_field_rule_for_type_outside_resource_types_is_refused() -> None:
    data = minimal()
    data["roles"]["patient"]["fields"] = {"Claim": {"exclude": ["total"]}}
    assert issues_of(data) == (
        "roles.patient.fields.Claim: the role may not see Claim; add it to resource_types or remove this",
    )


def test_choice_elements_expand_to_concrete_names() -> None:
    policy = parse_policy(with_role(fields={"Observation": {"include": ["code", "value[x]"]}}), "t")
    rule = policy.role("clinician").field_rule("Observation")
    assert rule is not None and rule.include is not None
    assert {"code", "valueQuantity", "valueCodeableConcept", "valueString"} <= rule.include
    bare = parse_policy(with_role(fields={"Observation": {"include": ["value"]}}), "t")
    assert bare.role("clinician").field_rule("Observation") == FieldRule(rule.include - {"code"}, frozenset())


@pytest.mark.parametrize(
    ("top", "expected"),
    [
        ({"default_role": "ghost"}, "default_role: 'ghost' is not a defined role; defined roles: clinician, patient"),
        ({"default_role": "patient"}, "default_role: 'patient' is own-record; default_role must name a care-team"),
        ({"practitioner_role": "patient"}, "practitioner_role: 'patient' is own-record"),
        ({"patient_role": "clinician"}, "patient_role: 'clinician' is care-team; patient_role must name an own-record"),
        ({"patient_role": ["patient"]}, "patient_role: must be a role name"),
        ({"role_claim": "has space"}, "role_claim: must be a JWT claim name"),
        ({"version": 2}, "version: only version 1 is supported"),
        ({"sensitive_labels": ["R", "N"]}, "sensitive_labels: 'N' is an ordinary confidentiality level"),
        ({"sensitive_labels": ["R", "ABC"]}, "sensitive_labels: 'ABC' is not a known security label"),
        ({"rolez": {}}, "rolez: unknown key; allowed: version, role_claim,"),
        ({"rate_limits": {"capacity": 10}}, "rate_limits.refill_per_second: is required"),
        ({"rate_limits": {"capacity": -1, "refill_per_second": 1}}, "rate_limits.capacity: -1 is out of range"),
        ({"rate_limits": {"costs": {"run_reprt": 2}}}, "rate_limits.costs.run_reprt: unknown key"),
        ({"rate_limits": {"costs": {"run_report": 0}}}, "rate_limits.costs.run_report: 0 is out of range; use 1 to"),
        ({"rate_limits": {"costs": {"run_report": 100}}}, "rate_limits.costs.run_report: 100 exceeds the capacity 60"),
        ({"rate_limits": {"redis_url": "http://x"}}, "rate_limits.redis_url: must be a redis://"),
    ],
)
def test_policy_issue_text(top: dict[str, Any], expected: str) -> None:
    data = minimal()
    data.update(top)
    found = issues_of(data)
    assert any(issue.startswith(expected) for issue in found), found


def test_practitioner_role_default_must_exist() -> None:
    data = minimal()
    data["roles"]["doctor"] = data["roles"].pop("clinician")
    found = issues_of(data)
    assert found == (
        "practitioner_role: 'clinician' (the default when practitioner_role is absent) is not a defined role; "
        "define it or set practitioner_role",
    )


def test_cost_above_a_role_bucket_is_refused() -> None:
    data = with_role(rate={"capacity": 3, "refill_per_second": 1})
    data["rate_limits"] = {"costs": {"query_sql": 5}}
    assert issues_of(data) == (
        "rate_limits.costs.query_sql: 5 exceeds the capacity 3 of role clinician; the tool could never run",
    )


def test_redis_password_is_never_echoed() -> None:
    data = minimal()
    data["rate_limits"] = {"redis_url": "http://user:hunter2@host"}
    with pytest.raises(PolicyError) as info:
        parse_policy(data, "t")
    assert "hunter2" not in str(info.value)
    data["rate_limits"] = {"redis_url": "redis://:hunter2@127.0.0.1:6379/0"}
    assert parse_policy(data, "t").redis_url == "redis://:hunter2@127.0.0.1:6379/0"


def test_all_issues_are_collected_not_just_the_first() -> None:
    data = with_role(access="everyone", purposes=["NOPE"], tools=["hack"], acess=1)
    data["default_role"] = "ghost"
    found = issues_of(data)
    assert len(found) == 5
    assert [i.split(":")[0] for i in found] == [
        "roles.clinician.acess",
        "roles.clinician.access",
        "roles.clinician.purposes",
        "roles.clinician.tools",
        "default_role",
    ]


def test_error_is_a_config_error_listing_every_issue() -> None:
    data = with_role(access="everyone", tools=["hack"])
    with pytest.raises(ConfigError) as info:
        parse_policy(data, "site.toml")
    text = info.value.message
    assert text.startswith("invalid policy site.toml (2 issues):")
    assert "roles.clinician.access" in text and "roles.clinician.tools" in text


@pytest.mark.parametrize("bad", [[], "roles", {"Bad-Name": {}}, {"": {}}])
def test_roles_table_shape(bad: Any) -> None:
    found = issues_of({"roles": bad})
    assert found and found[0].startswith("roles")


def test_non_mapping_top_level_and_non_string_keys() -> None:
    assert issues_of([]) == ("(top level): must be a table",)  # type: ignore[arg-type]
    assert issues_of({}) == ("roles: is required: at least one [roles.NAME] table",)
    data = minimal()
    data["roles"]["clinician"][3] = "x"
    assert any("has a key that is not a plain name" in i for i in issues_of(data))


def test_toml_syntax_error_names_line_and_column() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy_text('version = 1\n[roles.clinician]\naccess = "care-team\n', "bad.toml")
    (issue,) = info.value.issues
    assert issue.startswith("TOML syntax error:") and "line 3" in issue and "column" in issue


def test_validation_does_not_mutate_input() -> None:
    data = with_role(fields={"Observation": {"include": ["value[x]"]}})
    before = copy.deepcopy(data)
    parse_policy(data, "t")
    assert data == before


def test_known_tools_include_governance_and_write_tools() -> None:
    assert {"break_glass", "lookup_code", "audit_disclosures", "proposal_status", "book_appointment"} <= KNOWN_TOOLS


def test_packaged_file_is_in_the_source_tree() -> None:
    path = Path(__file__).resolve().parents[2] / "src/fhirgate/core/policy/default_policy.toml"
    assert path.read_text("utf-8") == default_policy_text()


def test_rules_reexports_parse_functions_without_import_cycle() -> None:
    import subprocess
    import sys

    from fhirgate.core.policy import rules

    assert rules.parse_policy(minimal(), "t") == parse_policy(minimal(), "t")
    with pytest.raises(PolicyError, match="TOML syntax error"):
        rules.load_policy_text("roles = [", "bad.toml")
    # Either module imported first, in a fresh interpreter, must work (no circular import at load time).
    for first, second in (("rules_parse", "rules"), ("rules", "rules_parse")):
        code = (
            f"import fhirgate.core.policy.{first} as a, fhirgate.core.policy.{second} as b\n"
            f"m = {minimal()!r}\n"
            "import sys; rp = sys.modules['fhirgate.core.policy.rules_parse']\n"
            "assert sys.modules['fhirgate.core.policy.rules'].parse_policy(m, 't') == rp.parse_policy(m, 't')\n"
        )
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_validate_element_accessors_serve_the_parser() -> None:
    from fhirgate.core.fhir import validate

    names = validate.element_names("Observation")
    choices = validate.choice_forms("Observation")
    assert names is not None and choices is not None
    assert {"status", "code", "valueQuantity", "valueString", "effectiveDateTime"} <= names
    assert "value" not in names and "value[x]" not in names
    assert {"valueQuantity", "valueCodeableConcept"} <= choices["value"] <= names
    assert validate.element_names("ClaimResponse") is None and validate.choice_forms("NoSuchType") is None
    assert "ClaimResponse" in validate.r4_resource_types() and "ClaimResponse" not in validate.supported_types()
    choices["value"] = frozenset()  # a fresh dict each call: the caller's change does not leak
    assert validate.choice_forms("Observation") != choices
    parsed = parse_policy(with_role(fields={"Observation": {"include": ["value[x]", "effectiveDateTime"]}}), "t")
    include = parsed.role("clinician").fields["Observation"].include
    assert include is not None and validate.choice_forms("Observation")["value"] <= include  # type: ignore[index]


def test_optout_aggregates_true_is_refused_not_ignored() -> None:
    from fhirgate.core.policy.rules import PolicyError, load_policy_text

    text = (
        'version = 1\ndefault_role = "a"\npractitioner_role = "a"\npatient_role = "p"\n'
        '[roles.a]\naccess = "practice"\nresource_types = "*"\noptout_aggregates = true\n'
        '[roles.p]\naccess = "own-record"\nresource_types = "*"\npurposes = ["PATRQT"]\n'
    )
    with pytest.raises(PolicyError) as info:
        load_policy_text(text, "t")
    assert any(i.startswith("roles.a.optout_aggregates: true is not supported yet") for i in info.value.issues)
