"""The local development issuer: key files, mint -> verify round trip, input validation, parse_ttl."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import jwt
import pytest

from fhirgate.auth.devissuer import (
    ISSUER_PREFIX,
    JWKS_FILE,
    PRIVATE_KEY_FILE,
    DevIssuer,
    load_trusted_issuer,
    parse_ttl,
)
from fhirgate.auth.tokens import TokenVerifier
from fhirgate.core.policy.access import plan_access
from fhirgate.errors import AuthenticationError, ConfigError, InvalidInput

AUD = "http://127.0.0.1:8765/mcp"


@pytest.fixture
def issuer(tmp_path: Path) -> DevIssuer:
    return DevIssuer.load_or_create(tmp_path / "keys")


def test_creates_key_files_with_safe_permissions(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    DevIssuer.load_or_create(keys)
    key_file = keys / PRIVATE_KEY_FILE
    assert key_file.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    if os.name == "posix":
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(keys.stat().st_mode) & 0o077 == 0
    jwks = json.loads((keys / JWKS_FILE).read_text())
    assert "d" not in jwks["keys"][0]  # the public file holds no private part


def test_reload_keeps_the_same_identity(tmp_path: Path) -> None:
    first = DevIssuer.load_or_create(tmp_path)
    second = DevIssuer.load_or_create(tmp_path)
    assert first.issuer == second.issuer
    assert first.issuer.startswith(ISSUER_PREFIX)
    assert len(first.issuer) == len(ISSUER_PREFIX) + 16
    other = DevIssuer.load_or_create(tmp_path / "elsewhere")
    assert other.issuer != first.issuer


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_refuses_a_world_readable_key(tmp_path: Path) -> None:
    DevIssuer.load_or_create(tmp_path)
    (tmp_path / PRIVATE_KEY_FILE).chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        DevIssuer.load_or_create(tmp_path)


def test_refuses_a_corrupt_or_wrong_key(tmp_path: Path) -> None:
    key_file = tmp_path / PRIVATE_KEY_FILE
    key_file.write_text("garbage")
    key_file.chmod(0o600)
    with pytest.raises(ConfigError):
        DevIssuer.load_or_create(tmp_path)


def test_mint_verify_round_trip(issuer: DevIssuer) -> None:
    token = issuer.mint(
        scope="openid fhirUser launch/patient patient/*.rs",
        audience=AUD,
        patient="p1",
        fhir_user="Patient/p1",
        purpose_of_use=["TREAT"],
        ttl_seconds=600,
    )
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256"
    assert header["kid"] == issuer.kid
    assert header["typ"] == "at+jwt"
    principal = TokenVerifier([issuer.trusted_issuer()], AUD).verify(token)
    assert principal.issuer == issuer.issuer
    assert principal.sub == "dev-user"
    assert principal.client_id == "fhirgate-dev"
    assert principal.patient == "p1"
    assert principal.fhir_user == "Patient/p1"
    assert principal.purpose_of_use == ("TREAT",)
    assert principal.expires_at is not None
    assert 590 < principal.expires_at - time.time() <= 600
    assert plan_access(principal, "Observation", "s").compartment == "p1"


def test_verify_needs_only_the_public_jwks(tmp_path: Path) -> None:
    issuer = DevIssuer.load_or_create(tmp_path)
    token = issuer.mint(scope="user/*.rs", audience=AUD)
    (tmp_path / PRIVATE_KEY_FILE).unlink()
    trusted = load_trusted_issuer(tmp_path)
    assert trusted.issuer == issuer.issuer
    assert TokenVerifier([trusted], AUD).verify(token).sub == "dev-user"


def test_load_trusted_issuer_without_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_trusted_issuer(tmp_path)
    (tmp_path / JWKS_FILE).write_text("{}")
    with pytest.raises(ConfigError):
        load_trusted_issuer(tmp_path)


def test_token_from_one_dev_key_fails_on_another(tmp_path: Path) -> None:
    a = DevIssuer.load_or_create(tmp_path / "a")
    b = DevIssuer.load_or_create(tmp_path / "b")
    token = a.mint(scope="user/*.rs", audience=AUD)
    with pytest.raises(AuthenticationError) as info:
        TokenVerifier([b.trusted_issuer()], AUD).verify(token)
    assert info.value.reason == "token.unknown_issuer"


def test_wrong_audience_round_trip(issuer: DevIssuer) -> None:
    token = issuer.mint(scope="user/*.rs", audience="http://127.0.0.1:9999/mcp")
    with pytest.raises(AuthenticationError) as info:
        TokenVerifier([issuer.trusted_issuer()], AUD).verify(token)
    assert info.value.reason == "token.wrong_audience"


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"scope": "patient/Observation.rx"}, "scope"),
        ({"scope": "openid patient/Observation.sr"}, "scope"),
        ({"scope": "foo/Patient.rs"}, "scope"),
        ({"audience": ""}, "audience"),
        ({"audience": "a b"}, "audience"),
        ({"ttl_seconds": 0}, "ttl"),
        ({"ttl_seconds": -5}, "ttl"),
        ({"ttl_seconds": 31 * 86400}, "ttl"),
        ({"patient": "../x"}, "patient"),
        ({"fhir_user": "Organization/1"}, "fhir_user"),
        ({"subject": ""}, "subject"),
        ({"purpose_of_use": ["has space"]}, "purpose_of_use"),
    ],
)
def test_mint_validates_input(issuer: DevIssuer, kwargs: dict[str, object], param: str) -> None:
    args: dict[str, object] = {"scope": "user/*.rs", "audience": AUD, **kwargs}
    with pytest.raises(InvalidInput) as info:
        issuer.mint(**args)  # type: ignore[arg-type]
    assert info.value.param == param
    if param == "scope":
        assert str(kwargs["scope"]).split()[-1] in info.value.message


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3600", 3600),
        ("1h", 3600),
        ("30m", 1800),
        ("2d", 172800),
        ("45s", 45),
        (" 1H ", 3600),
        ("1w", 604800),
        (90, 90),
    ],
)
def test_parse_ttl(text: str | int, seconds: int) -> None:
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1x", "-1h", "0", "0m", "1.5h", "1h30m", "one hour", True, -3])
def test_parse_ttl_rejects(text: str | int) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_ttl(text)
    assert info.value.param == "ttl"
    assert info.value.allowed
