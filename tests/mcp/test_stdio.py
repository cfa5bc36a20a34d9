"""The stdio edge: the principal must be configured explicitly (token or profile), and a real
subprocess serves the SDK's stdio client as that principal."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from mcp_support import audit_count

from fhirgate.app import build_verifier
from fhirgate.auth.devissuer import DevIssuer
from fhirgate.errors import ConfigError
from fhirgate.mcp.stdio import principal_from_profile, stdio_principal
from mcp import Client, StdioServerParameters

PROFILES = {
    "frontdesk": {"scope": "user/Patient.rs user/Appointment.rs", "fhir_user": "Practitioner/p1"},
    "self": {"scope": "patient/*.rs", "patient": "Patient/abc"},
    "broken": {"scope": "user/Patient.xyz"},
    "nodata": {"scope": "openid fhirUser"},
}


def test_no_token_and_no_profile_refuses_to_start() -> None:
    with pytest.raises(ConfigError) as exc:
        stdio_principal(token=None, profile=None, verifier=None, profiles=PROFILES)
    assert "--token" in exc.value.message
    assert "--profile" in exc.value.message


def test_profiles_become_principals() -> None:
    p = principal_from_profile("frontdesk", PROFILES)
    assert p.fhir_user == "Practitioner/p1"
    assert p.patient is None
    assert [s.resource_type for s in p.scopes.resources] == ["Patient", "Appointment"]
    assert principal_from_profile("self", PROFILES).patient == "abc"


@pytest.mark.parametrize("name", ["broken", "nodata", "missing"])
def test_bad_profiles_are_config_errors(name: str) -> None:
    with pytest.raises(ConfigError):
        principal_from_profile(name, PROFILES)


def test_token_is_verified_like_a_bearer_token(practice: Any) -> None:
    issuer = DevIssuer.load_or_create(practice.data_dir.keys_dir)
    settings = practice.data_dir.settings()
    verifier = build_verifier(practice.data_dir, settings)
    good = issuer.mint(scope="user/*.rs", audience=settings.resource_url)
    assert stdio_principal(token=good, profile=None, verifier=verifier, profiles={}).sub == "dev-user"
    wrong = issuer.mint(scope="user/*.rs", audience="https://elsewhere.example/mcp")
    with pytest.raises(ConfigError) as exc:
        stdio_principal(token=wrong, profile=None, verifier=verifier, profiles={})
    assert "token.wrong_audience" in exc.value.message
    with pytest.raises(ConfigError):
        stdio_principal(token=good, profile="self", verifier=verifier, profiles=PROFILES)


async def test_stdio_subprocess_serves_as_profile(practice: Any, gateway: Any) -> None:
    practice.data_dir.update_settings("profiles", {"reception": {"scope": "user/Patient.rs"}})
    params = StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "fhirgate.cli.main",
            "serve",
            "--stdio",
            "--data",
            str(practice.data_dir.path),
            "--profile",
            "reception",
        ],
    )
    before = audit_count(gateway)
    async with Client(params) as client:
        who = await client.call_tool("whoami", {})
        assert who.structured_content["subject"] == "profile:reception"  # type: ignore[index]
        denied = await client.call_tool("search_resources", {"resource_type": "Observation"})
        assert denied.is_error
        assert "user/Observation.rs" in denied.content[0].text
    assert audit_count(gateway) - before >= 3  # discover or initialize, then two tool calls
