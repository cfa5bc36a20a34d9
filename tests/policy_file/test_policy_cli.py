"""`fhirgate policy check|show`, the file loader's errors, and the tool-name list against the real server."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from fhirgate.cli.main import main
from fhirgate.core.policy.rules import CURRENT_TOOLS, KNOWN_TOOLS, PolicyError
from fhirgate.errors import ConfigError
from fhirgate.policy_loader import default_policy_text, load_policy

BAD = """
[roles.clinician]
access = "everyone"
resource_types = ["Patinet"]
purposes = ["TREAT"]

[roles.patient]
access = "own-record"
resource_types = "*"
purposes = ["PATRQT"]
tools = ["hack"]
"""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, text: str, name: str = "policy.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_check_default_policy_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, default_policy_text())
    code, out, err = run(capsys, "policy", "check", str(path))
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == (
        f"policy OK: {path}: 7 roles: clinician, practice_staff, front_desk, billing, analyst, compliance, patient"
    )
    assert lines[1].startswith("  clinician: care-team, 24 types, purposes TREAT ETREAT, break-glass 60 min")
    assert any(line.startswith("  analyst: practice") and "de-identified" in line for line in lines)
    assert "default role practice_staff" in lines[-1]


def test_check_invalid_lists_every_issue_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, BAD)
    code, out, err = run(capsys, "policy", "check", str(path))
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert lines[0] == f"fhirgate: policy {path} is invalid (3 issues):"
    assert lines[1].startswith("  roles.clinician.access: 'everyone' is not allowed")
    assert lines[2].startswith("  roles.clinician.resource_types: 'Patinet' is not a known resource type")
    assert lines[3].startswith("  roles.patient.tools: 'hack' is not a known tool")


def test_check_syntax_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "policy", "check", str(write(tmp_path, "[roles\n")))
    assert code == 2 and "TOML syntax error" in err and "line 1" in err


@pytest.mark.parametrize("kind", ["missing", "directory", "binary"])
def test_check_unreadable_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    target = tmp_path / "p.toml"
    if kind == "directory":
        target.mkdir()
    elif kind == "binary":
        target.write_bytes(b"\xff\xfe\x00roles")
    code, out, err = run(capsys, "policy", "check", str(target))
    assert code == 2 and out == ""
    assert err.startswith("fhirgate: error: policy") and str(target) in err and "Traceback" not in err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_check_permission_denied(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, default_policy_text())
    path.chmod(0)
    try:
        code, _, err = run(capsys, "policy", "check", str(path))
    finally:
        path.chmod(0o600)
    assert code == 2 and f"cannot read policy file {path}" in err


def test_show_default_and_role(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "policy", "show")
    assert code == 0
    data = json.loads(out)
    assert data["source"] == "(default policy)" and set(data["roles"]) >= {"clinician", "patient"}
    assert data["rate_limits"]["costs"]["query_sql"] == 5
    code, out, _ = run(capsys, "policy", "show", "--role", "front_desk")
    one = json.loads(out)
    assert code == 0 and list(one["roles"]) == ["front_desk"]
    assert "reasonCode" in one["roles"]["front_desk"]["fields"]["Appointment"]["exclude"]


def test_show_file_masks_redis_password(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = default_policy_text().replace(
        '# redis_url = "redis://127.0.0.1:6379/0"', 'redis_url = "redis://:hunter2@127.0.0.1:6379/0"'
    )
    code, out, _ = run(capsys, "policy", "show", "--file", str(write(tmp_path, text)))
    assert code == 0 and "hunter2" not in out
    assert json.loads(out)["rate_limits"]["redis_url"] == "redis://***@127.0.0.1:6379/0"


def test_show_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "policy", "show", "--role", "root")
    assert code == 1 and "--role" in err and "clinician" in err
    code, _, err = run(capsys, "policy", "show", "--file", str(write(tmp_path, BAD)))
    assert code == 2 and "3 issues" in err


def test_loader_errors_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="policy file not found"):
        load_policy(tmp_path / "none.toml")
    with pytest.raises(PolicyError) as info:
        load_policy(write(tmp_path, BAD))
    assert info.value.source == str(tmp_path / "policy.toml") and len(info.value.issues) == 3
    big = write(tmp_path, "#" * 1_000_001, "big.toml")
    with pytest.raises(ConfigError, match="too large"):
        load_policy(big)


async def test_every_registered_tool_is_known() -> None:
    from fhirgate.mcp.server import build_server
    from fhirgate.service.gateway import Gateway

    server = build_server(cast(Gateway, SimpleNamespace(audit=None, request_state_key=None)), transport="in-memory")
    names = {tool.name for tool in await server.list_tools()}
    assert names, "the server registered no tools"
    assert names <= KNOWN_TOOLS, f"tools missing from rules.KNOWN_TOOLS: {sorted(names - KNOWN_TOOLS)}"
    assert names >= CURRENT_TOOLS, f"CURRENT_TOOLS lists tools the server lacks: {sorted(CURRENT_TOOLS - names)}"


def test_default_policy_tools_exist() -> None:
    policy: Any = load_policy(None)
    for role in policy.roles.values():
        assert role.tools is None or role.tools <= KNOWN_TOOLS
