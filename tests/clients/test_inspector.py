"""A real client nobody here wrote: the MCP Inspector CLI, over stdio and over HTTP with a token.

It lists the tools, calls every read-only tool, reads both resource templates and gets both prompts.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from client_support import FHIRGATE, client_bin, fhirgate, free_port, make_demo, node_env, running_server

pytestmark = [pytest.mark.node, pytest.mark.slow]

PATIENT = "pat-000001"
# Every read-only tool with arguments that must succeed on the demo practice.
TOOL_CALLS: list[tuple[str, list[str]]] = [
    ("whoami", []),
    ("find_patients", ["count=3"]),
    ("patient_summary", [f"patient_id={PATIENT}"]),
    ("search_resources", ["resource_type=Observation", "count=2"]),
    ("read_resource", ["resource_type=Patient", f"id={PATIENT}"]),
    ("patient_everything", [f"patient_id={PATIENT}", "count=5"]),
    ("grep_record", [f"patient_id={PATIENT}", "pattern=a"]),
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, str]]:
    data = tmp_path_factory.mktemp("inspector") / "data"
    port = free_port()
    make_demo(data, port)
    # A practice-wide role (a clinician's fhirUser alone would confine it to that practitioner's care team).
    token = fhirgate(
        "token",
        "--data",
        str(data),
        "--scope",
        "user/*.rs",
        "--fhir-user",
        "Practitioner/demo",
        "--role",
        "practice_staff",
    ).strip()
    with running_server(data, port) as url:
        yield data, url, token


def inspect(target: list[str], *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    cmd = [str(client_bin("mcp-inspector")), "--cli", *target, *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=node_env(**(env or {})), check=False)
    assert out.returncode == 0, f"inspector exit {out.returncode}: {out.stderr[-2000:]}"
    data = json.loads(out.stdout)
    assert isinstance(data, dict)
    return data


def targets(setup: tuple[Path, str, str]) -> dict[str, tuple[list[str], dict[str, str]]]:
    data, url, token = setup
    stdio = [str(FHIRGATE), "serve", "--stdio", "--data", str(data), "-e", f"FHIRGATE_TOKEN={token}"]
    return {
        "stdio": (stdio, {"FHIRGATE_TOKEN": token}),
        "http": ([url, "--header", f"Authorization: Bearer {token}"], {}),
    }


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_tools_list_and_every_read_only_tool(setup: tuple[Path, str, str], transport: str) -> None:
    target, env = targets(setup)[transport]
    listed = inspect(target, "--method", "tools/list", env=env)
    tools = {t["name"]: t for t in listed["tools"]}
    assert set(tools) >= {name for name, _ in TOOL_CALLS}
    for name, args in TOOL_CALLS:
        assert tools[name]["annotations"]["readOnlyHint"] is True
        assert "outputSchema" in tools[name]
        extra = ["--tool-arg", *args] if args else []
        result = inspect(target, "--method", "tools/call", "--tool-name", name, *extra, env=env)
        assert result.get("isError") is not True, (name, result)
        assert result["structuredContent"], name
        assert json.loads(result["content"][0]["text"]) == result["structuredContent"], name


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_resources_read_and_prompts_get(setup: tuple[Path, str, str], transport: str) -> None:
    target, env = targets(setup)[transport]
    read = inspect(target, "--method", "resources/read", "--uri", f"fhir://Patient/{PATIENT}", env=env)
    body = json.loads(read["contents"][0]["text"])
    assert body["resourceType"] == "Patient"
    assert body["id"] == PATIENT
    summary = inspect(target, "--method", "resources/read", "--uri", f"patient://{PATIENT}/summary", env=env)
    assert json.loads(summary["contents"][0]["text"])["patient"]["id"] == PATIENT
    prompt = inspect(
        target, "--method", "prompts/get", "--prompt-name", "previsit_summary", "--prompt-args",
        f"patient_id={PATIENT}", env=env,
    )  # fmt: skip
    assert PATIENT in prompt["messages"][0]["content"]["text"]
    review = inspect(
        target, "--method", "prompts/get", "--prompt-name", "weekly_noshow_review", "--prompt-args",
        "week_start=2026-11-09", env=env,
    )  # fmt: skip
    assert "noshow" in review["messages"][0]["content"]["text"]


def test_http_without_token_is_refused(setup: tuple[Path, str, str]) -> None:
    _, url, _ = setup
    cmd = [str(client_bin("mcp-inspector")), "--cli", url, "--method", "tools/list"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=node_env(), check=False)
    assert out.returncode != 0


def test_stdio_without_identity_refuses_to_start(setup: tuple[Path, str, str]) -> None:
    data, _, _ = setup
    cmd = [str(client_bin("mcp-inspector")), "--cli", str(FHIRGATE), "serve", "--stdio", "--data", str(data),
           "--method", "tools/list"]  # fmt: skip
    env = node_env()
    env.pop("FHIRGATE_TOKEN", None)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert out.returncode != 0
