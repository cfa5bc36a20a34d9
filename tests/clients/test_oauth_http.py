"""OAuth resource-server behaviour of the real `fhirgate serve` process over HTTP (no conformance scenarios exist
for it): metadata, 401/403 challenges, and the token checks an attacker would try first."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from client_support import fhirgate, free_port, make_demo, running_server
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fhirgate.auth.devissuer import DevIssuer

pytestmark = pytest.mark.slow

RPC = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    data = tmp_path_factory.mktemp("oauth") / "data"
    port = free_port()
    make_demo(data, port)
    with running_server(data, port) as url:
        yield data, url


def post(url: str, token: str | None) -> httpx.Response:
    headers = dict(HEADERS)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(url, json=RPC, headers=headers, timeout=10)


def b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def hs256_with_public_key(body: dict[str, object], secret: bytes, kid: str) -> str:
    """The key-confusion attack: an HMAC token whose secret is the issuer's public key (PEM)."""
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{b64(body)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def claims(url: str, issuer: str, **over: object) -> dict[str, object]:
    now = int(time.time())
    return {"iss": issuer, "sub": "attacker", "aud": url, "iat": now, "exp": now + 600, "scope": "user/*.rs", **over}


def test_metadata_document_names_resource_and_issuer(served: tuple[Path, str]) -> None:
    data, url = served
    base = url.removesuffix("/mcp")
    doc = httpx.get(f"{base}/.well-known/oauth-protected-resource/mcp", timeout=5).json()
    assert doc["resource"] == url
    assert doc["authorization_servers"] == [DevIssuer.load_or_create(data / "keys").issuer]


def test_a_good_token_is_accepted(served: tuple[Path, str]) -> None:
    data, url = served
    token = fhirgate("token", "--data", str(data), "--scope", "user/*.rs").strip()
    reply = post(url, token)
    assert reply.status_code == 200
    assert "find_patients" in reply.text


def test_attacks_are_401_invalid_token(served: tuple[Path, str], tmp_path: Path) -> None:
    data, url = served
    trusted = DevIssuer.load_or_create(data / "keys")
    stranger = DevIssuer.load_or_create(tmp_path / "other-keys")  # a different key and issuer id
    trusted_key = serialization.load_pem_private_key((data / "keys" / "dev-issuer-key.pem").read_bytes(), None)
    attacks = {
        "untrusted issuer": stranger.mint(scope="user/*.rs", audience=url),
        "trusted issuer id, foreign key": jwt.encode(
            claims(url, trusted.issuer),
            ec.generate_private_key(ec.SECP256R1()),
            algorithm="ES256",
            headers={"kid": trusted.kid},
        ),
        "wrong audience": trusted.mint(scope="user/*.rs", audience="https://elsewhere.example/mcp"),
        "expired": jwt.encode(
            claims(url, trusted.issuer, exp=int(time.time()) - 3600),
            trusted_key,  # type: ignore[arg-type]
            algorithm="ES256",
            headers={"kid": trusted.kid},
        ),
        "alg none": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims(url, trusted.issuer))}.",
        "HS256 keyed with the issuer's public key": hs256_with_public_key(
            claims(url, trusted.issuer),
            trusted_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            trusted.kid,
        ),
    }
    for name, token in attacks.items():
        reply = post(url, token)
        assert reply.status_code == 401, name
        challenge = reply.headers["www-authenticate"]
        assert 'error="invalid_token"' in challenge, name
        assert "resource_metadata=" in challenge, name
        assert "find_patients" not in reply.text, name


def test_no_token_and_insufficient_scope(served: tuple[Path, str]) -> None:
    data, url = served
    missing = post(url, None)
    assert missing.status_code == 401
    assert "error=" not in missing.headers["www-authenticate"]
    no_scope = fhirgate("token", "--data", str(data), "--scope", "openid fhirUser").strip()
    refused = post(url, no_scope)
    assert refused.status_code == 403
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
