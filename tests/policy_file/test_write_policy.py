"""Safe writes in the policy (issue 7): [writes], role write_types, the write-tool decision and `serve --allow-writes`.

Read-only by default: every write tool is refused with `writes.disabled` until `[writes] enabled = true` or
`fhirgate serve --allow-writes`; then a role needs write_types, and the type the tool writes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, cast

import pytest

from fhirgate import app
from fhirgate.cli.main import build_parser, main
from fhirgate.cli.serve_cmd import cmd_serve
from fhirgate.config import DataDir
from fhirgate.core.policy.rules import (
    CURRENT_TOOLS,
    KNOWN_TOOLS,
    WRITE_TOOLS,
    Policy,
    PolicyError,
    WritePolicy,
    policy_to_dict,
)
from fhirgate.core.policy.rules_parse import load_policy_text, parse_policy
from fhirgate.database import KEY_ENV, KEY_FILE_ENV
from fhirgate.policy_loader import default_policy_text, load_policy
from fhirgate.service.governance import Governance, tool_decision
from fhirgate.store.contract import FhirStore

ROLES = ("clinician", "practice_staff", "front_desk", "billing", "analyst", "compliance", "patient")
WRITES = ("book_appointment", "update_appointment", "add_clinical_note", "create_resource", "update_resource")
TOOLS = (*WRITES, "proposal_status")
CLINICIAN_TYPES = frozenset(
    {
        "Appointment", "DocumentReference", "Condition", "Observation", "AllergyIntolerance", "MedicationRequest",
        "Procedure", "Immunization", "CarePlan",
    }
)  # fmt: skip


def minimal(**role: Any) -> dict[str, Any]:
    """A small valid policy whose `clerk` role takes `role`'s keys (plus a patient role for patient_role)."""
    clerk: dict[str, Any] = {"access": "practice", "resource_types": ["Patient", "Appointment"]}
    clerk["purposes"] = ["HOPERAT"]
    clerk.update(role)
    return {
        "practitioner_role": "clerk",
        "roles": {
            "clerk": clerk,
            "patient": {"access": "own-record", "resource_types": "*", "purposes": ["PATRQT"]},
        },
    }


def issues_of(data: dict[str, Any]) -> tuple[str, ...]:
    with pytest.raises(PolicyError) as info:
        parse_policy(data, "test.toml")
    return info.value.issues


@pytest.fixture(scope="module")
def default() -> Policy:
    return load_policy(None)


# ---- the model and the tool lists -----------------------------------------------------------------------------


def test_write_tools_are_current_known_tools() -> None:
    assert set(TOOLS) == WRITE_TOOLS
    assert WRITE_TOOLS <= CURRENT_TOOLS <= KNOWN_TOOLS
    assert {"break_glass", "lookup_code", "audit_disclosures"} <= CURRENT_TOOLS


def test_write_policy_defaults_read_only() -> None:
    assert WritePolicy() == WritePolicy(enabled=False, proposal_ttl_hours=24)
    policy = parse_policy(minimal(), "t")
    assert policy.writes == WritePolicy() and policy.role("clerk").write_types == frozenset()


def test_with_writes_enabled_is_a_copy(default: Policy) -> None:
    on = default.with_writes_enabled()
    assert on.writes == WritePolicy(enabled=True, proposal_ttl_hours=24)
    assert not default.writes.enabled  # the original is untouched
    assert on.roles is default.roles and on.source == default.source
    assert on.with_writes_enabled() == on
    ttl = parse_policy({**minimal(), "writes": {"proposal_ttl_hours": 72}}, "t").with_writes_enabled()
    assert ttl.writes == WritePolicy(enabled=True, proposal_ttl_hours=72)


# ---- parsing [writes] and write_types --------------------------------------------------------------------------


def test_writes_table_parses() -> None:
    text = (
        default_policy_text()
        .replace("enabled = false", "enabled = true")
        .replace("proposal_ttl_hours = 24", "proposal_ttl_hours = 720")
    )
    policy = load_policy_text(text, "t.toml")
    assert policy.writes == WritePolicy(enabled=True, proposal_ttl_hours=720)
    one = parse_policy({**minimal(), "writes": {"proposal_ttl_hours": 1}}, "t")
    assert one.writes == WritePolicy(enabled=False, proposal_ttl_hours=1)


@pytest.mark.parametrize(
    ("writes", "issue"),
    [
        (
            {"enable": True},
            "writes.enable: unknown key; allowed: enabled, proposal_ttl_hours; did you mean 'enabled'?",
        ),
        ({"enabled": "yes"}, "writes.enabled: must be true or false"),
        ({"proposal_ttl_hours": 0}, "writes.proposal_ttl_hours: 0 is out of range; use 1 to 720"),
        ({"proposal_ttl_hours": 721}, "writes.proposal_ttl_hours: 721 is out of range; use 1 to 720"),
        ({"proposal_ttl_hours": 1.5}, "writes.proposal_ttl_hours: must be an integer from 1 to 720"),
        ({"proposal_ttl_hours": True}, "writes.proposal_ttl_hours: must be an integer from 1 to 720"),
        ({"proposal_ttl_hours": "24"}, "writes.proposal_ttl_hours: must be an integer from 1 to 720"),
        (True, "writes: must be a table"),
    ],
)
def test_writes_table_errors(writes: object, issue: str) -> None:
    assert issues_of({**minimal(), "writes": writes}) == (issue,)


def test_unknown_top_level_key_hints_writes() -> None:
    (issue,) = issues_of({**minimal(), "write": {}})
    assert issue.startswith("write: unknown key; allowed: ") and "writes" in issue
    assert issue.endswith("did you mean 'writes'?")


def test_write_types_unknown_and_unserved_types() -> None:
    issues = issues_of(minimal(resource_types="*", write_types=["Appointmnet", "ClaimResponse"]))
    assert len(issues) == 2
    assert issues[0].startswith(
        "roles.clerk.write_types: 'Appointmnet' is not a known resource type (did you mean 'Appointment'?); use one of "
    )
    assert issues[1].startswith(
        "roles.clerk.write_types: 'ClaimResponse' is a FHIR R4 type fhirgate does not serve; use one of "
    )


def test_write_types_shape_errors() -> None:
    assert issues_of(minimal(write_types="Appointment")) == ("roles.clerk.write_types: must be a list of strings",)
    assert issues_of(minimal(write_types="*")) == ("roles.clerk.write_types: must be a list of strings",)
    assert issues_of(minimal(write_types=["Appointment", "Appointment"])) == (
        "roles.clerk.write_types: 'Appointment' is listed twice",
    )
    assert issues_of(minimal(writes_types=["Appointment"]))[0].endswith("did you mean 'write_types'?")


def test_write_type_outside_resource_types_is_refused() -> None:
    assert issues_of(minimal(write_types=["Appointment", "Condition"])) == (
        "roles.clerk.write_types: 'Condition' is not in the role's resource_types (a role cannot write what it may "
        "not see); add it to resource_types or use some of Appointment, Patient",
    )
    everything = parse_policy(minimal(resource_types="*", write_types=["Condition"]), "t")
    assert everything.role("clerk").write_types == frozenset({"Condition"})


def test_deidentified_role_cannot_have_write_types() -> None:
    assert issues_of(minimal(deidentify=True, write_types=["Appointment"])) == (
        "roles.clerk.write_types: a de-identified role (deidentify = true) cannot propose writes: it never sees the "
        "identified record it would change; remove write_types or set deidentify = false",
    )
    assert parse_policy(minimal(deidentify=True, write_types=[]), "t").role("clerk").write_types == frozenset()


def test_every_write_issue_at_once() -> None:
    data = minimal(deidentify=True, write_types=["Condition", "Nope"])
    data["writes"] = {"enabled": 1, "proposal_ttl_hours": 0, "ttl": 3}
    issues = issues_of(data)
    assert [i.split(":", 1)[0] for i in issues] == [
        "roles.clerk.write_types",  # Nope
        "roles.clerk.write_types",  # Condition outside resource_types
        "roles.clerk.write_types",  # de-identified
        "writes.ttl",
        "writes.enabled",
        "writes.proposal_ttl_hours",
    ]


# ---- the default policy ----------------------------------------------------------------------------------------


def test_default_policy_is_read_only_with_role_write_types(default: Policy) -> None:
    assert default.writes == WritePolicy(enabled=False, proposal_ttl_hours=24)
    expected = {
        "clinician": CLINICIAN_TYPES,
        "practice_staff": frozenset({"Appointment", "DocumentReference"}),
        "front_desk": frozenset({"Appointment"}),
        "patient": frozenset({"Appointment"}),
        "billing": frozenset(),
        "analyst": frozenset(),
        "compliance": frozenset(),
    }
    assert {name: role.write_types for name, role in default.roles.items()} == expected
    for name in ("billing", "analyst", "compliance"):
        tools = default.role(name).tools
        assert tools is not None and not tools & WRITE_TOOLS, name
    for name in ("clinician", "practice_staff", "front_desk", "patient"):
        role = default.role(name)
        assert role.tools is not None and "proposal_status" in role.tools, name
        assert role.write_types <= (role.resource_types or role.write_types), name


def test_default_policy_file_documents_how_to_turn_writes_on() -> None:
    text = default_policy_text()
    assert "[writes]\nenabled = false" in text and "--allow-writes" in text and "proposal_ttl_hours = 24" in text


def test_policy_to_dict_shows_writes_and_write_types(default: Policy) -> None:
    data = policy_to_dict(default)
    assert data["writes"] == {"enabled": False, "proposal_ttl_hours": 24}
    assert data["roles"]["front_desk"]["write_types"] == ["Appointment"]
    assert data["roles"]["clinician"]["write_types"] == sorted(CLINICIAN_TYPES)
    assert data["roles"]["analyst"]["write_types"] == []
    assert policy_to_dict(default.with_writes_enabled())["writes"]["enabled"] is True


def test_policy_show_prints_writes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["policy", "show"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["writes"] == {"enabled": False, "proposal_ttl_hours": 24}
    assert data["roles"]["patient"]["write_types"] == ["Appointment"]
    path = tmp_path / "p.toml"
    path.write_text(default_policy_text().replace("enabled = false", "enabled = true"), encoding="utf-8")
    assert main(["policy", "show", "--file", str(path), "--role", "practice_staff"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["roles"]["practice_staff"]["write_types"] == ["Appointment", "DocumentReference"]
    assert main(["policy", "check", str(path)]) == 0


# ---- the tool decision -----------------------------------------------------------------------------------------

OK = "writes.allowed"
OFF = "writes.disabled"
NO_TOOL = "role.tool_not_allowed"
# role -> expected reason per tool in TOOLS order, with writes off and on.
MATRIX: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "clinician": ((OFF,) * 6, (OK,) * 6),
    "practice_staff": ((OFF,) * 6, (OK,) * 6),
    "front_desk": (
        (OFF, OFF, NO_TOOL, NO_TOOL, NO_TOOL, OFF),
        (OK, OK, NO_TOOL, NO_TOOL, NO_TOOL, OK),
    ),
    "billing": ((NO_TOOL,) * 6, (NO_TOOL,) * 6),
    "analyst": ((NO_TOOL,) * 6, (NO_TOOL,) * 6),
    "compliance": ((NO_TOOL,) * 6, (NO_TOOL,) * 6),
    "patient": (
        (OFF, NO_TOOL, NO_TOOL, NO_TOOL, NO_TOOL, OFF),
        (OK, NO_TOOL, NO_TOOL, NO_TOOL, NO_TOOL, OK),
    ),
}


@pytest.mark.parametrize("enabled", [False, True], ids=["off", "on"])
@pytest.mark.parametrize("role", ROLES)
def test_default_role_by_write_tool(default: Policy, role: str, enabled: bool) -> None:
    writes = WritePolicy(enabled=enabled)
    got = tuple(tool_decision(default.role(role), tool, writes).reason for tool in TOOLS)
    assert got == MATRIX[role][enabled]
    for tool in TOOLS:
        decision = tool_decision(default.role(role), tool, writes)
        assert decision.allowed == (decision.reason == OK)
        assert decision.detail


def test_matrix_covers_every_default_role_and_write_tool(default: Policy) -> None:
    assert set(MATRIX) == set(default.roles) and set(TOOLS) == WRITE_TOOLS


def test_no_writes_argument_means_read_only(default: Policy) -> None:
    clinician = default.role("clinician")
    for tool in TOOLS:
        decision = tool_decision(clinician, tool)
        assert decision.reason == OFF
        assert decision.detail == (
            "This server is read-only: write tools are off. An operator turns them on with `fhirgate serve "
            "--allow-writes` or `[writes] enabled = true` in the policy file."
        )
    assert tool_decision(clinician, "read_resource").allowed  # read tools are unaffected


def test_role_without_write_types_is_refused() -> None:
    role = parse_policy(minimal(tools="*"), "t").role("clerk")
    decision = tool_decision(role, "create_resource", WritePolicy(enabled=True))
    assert decision.reason == "writes.not_allowed_for_role" and not decision.allowed
    assert "clerk" in decision.detail and "write_types" in decision.detail
    assert tool_decision(role, "proposal_status", WritePolicy(enabled=True)).reason == "writes.not_allowed_for_role"
    assert tool_decision(role, "create_resource").reason == OFF  # disabled wins


@pytest.mark.parametrize(
    ("tool", "reason"),
    [
        ("book_appointment", "writes.type_not_allowed"),
        ("update_appointment", "writes.type_not_allowed"),
        ("add_clinical_note", "writes.type_not_allowed"),
        ("create_resource", OK),
        ("update_resource", OK),
        ("proposal_status", OK),
    ],
)
def test_specific_write_tools_need_their_type(tool: str, reason: str) -> None:
    role = parse_policy(minimal(resource_types="*", tools="*", write_types=["Condition", "Observation"]), "t").role(
        "clerk"
    )
    decision = tool_decision(role, tool, WritePolicy(enabled=True))
    assert decision.reason == reason
    if reason == "writes.type_not_allowed":
        needed = "DocumentReference" if tool == "add_clinical_note" else "Appointment"
        assert decision.detail == (
            f"Role clerk may not write {needed}, which {tool} writes; its write types: Condition, Observation."
        )
    else:
        assert "Condition, Observation" in decision.detail


def test_notes_need_document_reference_only() -> None:
    role = parse_policy(minimal(resource_types="*", tools="*", write_types=["DocumentReference"]), "t").role("clerk")
    on = WritePolicy(enabled=True)
    assert tool_decision(role, "add_clinical_note", on).reason == OK
    assert tool_decision(role, "book_appointment", on).reason == "writes.type_not_allowed"


def test_deidentified_role_is_refused_before_writes(default: Policy) -> None:
    role = parse_policy(minimal(tools="*", deidentify=True), "t").role("clerk")
    for tool in TOOLS:
        assert tool_decision(role, tool, WritePolicy(enabled=True)).reason == "deid.tool_not_deidentified"


def test_governance_tool_decision_follows_the_policy(default: Policy) -> None:
    store = cast(FhirStore, None)  # the tool decision never touches the store
    off = Governance(default, store)
    on = Governance(default.with_writes_enabled(), store)
    try:
        clinician = default.role("clinician")
        assert off.tool_decision(clinician, "book_appointment").reason == OFF
        assert on.tool_decision(clinician, "book_appointment").reason == OK
        assert on.tool_decision(clinician, "break_glass").allowed
        assert not on.tool_decision(default.role("front_desk"), "break_glass").allowed
    finally:
        off.close()
        on.close()


# ---- fhirgate serve --allow-writes -----------------------------------------------------------------------------


def test_serve_parser_has_allow_writes() -> None:
    parser = build_parser()
    assert parser.parse_args(["serve", "--stdio", "--allow-writes"]).allow_writes is True
    assert parser.parse_args(["serve", "--http", "--allow-writes"]).allow_writes is True
    assert parser.parse_args(["serve"]).allow_writes is False


@pytest.mark.parametrize("mode", ["--stdio", "--http"])
@pytest.mark.parametrize("allow", [False, True])
def test_cmd_serve_threads_allow_writes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mode: str, allow: bool
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    seen: dict[str, Any] = {}
    monkeypatch.setattr(app, "run_stdio", lambda data_dir, **kw: seen.update(kw))
    monkeypatch.setattr(app, "run_http", lambda data_dir, **kw: seen.update(kw))
    argv = ["serve", "--data", str(tmp_path), mode, "--profile", "x"] if mode == "--stdio" else ["serve", mode]
    if mode == "--http":
        argv[1:1] = ["--data", str(tmp_path)]
    args: argparse.Namespace = build_parser().parse_args([*argv, *(["--allow-writes"] if allow else [])])
    assert cmd_serve(args) == 0
    assert seen["allow_writes"] is allow and seen["policy_file"] is None


def test_resolve_policy_allow_writes(tmp_path: Path) -> None:
    data = DataDir(tmp_path)
    assert not app.resolve_policy(data).writes.enabled
    assert app.resolve_policy(data, allow_writes=True).writes == WritePolicy(enabled=True, proposal_ttl_hours=24)
    path = tmp_path / "p.toml"
    path.write_text(default_policy_text().replace("enabled = false", "enabled = true"), encoding="utf-8")
    assert app.resolve_policy(data, override=str(path)).writes.enabled  # the file alone turns writes on


def test_describe_writes_line(default: Policy) -> None:
    off = app.describe_writes(default)
    assert off.startswith("writes: off, the server is read-only") and "--allow-writes" in off
    on = app.describe_writes(default.with_writes_enabled())
    assert on.startswith("writes: ENABLED;") and "confirms or another human approves" in on
    assert on.endswith("roles that may propose writes: clinician, practice_staff, front_desk, patient")
    assert "\n" not in off + on
