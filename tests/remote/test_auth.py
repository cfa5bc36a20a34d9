"""SMART Backend Services auth for the upstream FHIR server: the assertion, the token request, caching, discovery."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fhirgate.errors import ConfigError
from fhirgate.remote import (
    BackendServicesAuth,
    StaticTokenAuth,
    UpstreamAuth,
    UpstreamAuthFailed,
    UpstreamMalformed,
    UpstreamUnavailable,
)
from fhirgate.remote.auth import ASSERTION_TYPE

TOKEN_URL = "https://auth.example.org/oauth/token"
FHIR_BASE = "https://fhir.example.org/r4"
PHI = "Zebediah Quux"


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


def _token_response(token: str = "tok-1", expires_in: int = 300) -> httpx.Response:
    return httpx.Response(200, json={"access_token": token, "token_type": "Bearer", "expires_in": expires_in})


def _auth(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, clock: Callable[[], float], **kw: object
) -> BackendServicesAuth:
    options: dict[str, object] = {
        "client_id": "fhirgate-backend",
        "private_key": _pem(key),
        "kid": "key-2026",
        "scopes": "system/*.rs",
        "clock": clock,
    }
    if "fhir_base" not in kw:
        options["token_endpoint"] = TOKEN_URL
    options.update(kw)
    return BackendServicesAuth(**options)  # type: ignore[arg-type]


def _form(request: httpx.Request) -> dict[str, str]:
    parsed = parse_qs(request.content.decode(), strict_parsing=True)
    assert all(len(v) == 1 for v in parsed.values())
    return {k: v[0] for k, v in parsed.items()}


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_token_request_form_and_assertion(
    alg: str, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey, clock: Clock, mock: respx.MockRouter
) -> None:
    key = rsa_key if alg == "RS384" else ec_key
    route = mock.post(TOKEN_URL).mock(return_value=_token_response())
    auth = _auth(key, clock, algorithm=alg, scopes=["system/Patient.rs", "system/Observation.rs"])
    assert auth.headers() == {"Authorization": "Bearer tok-1"}

    request = route.calls.last.request
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    form = _form(request)
    assert form["grant_type"] == "client_credentials"
    assert form["scope"] == "system/Patient.rs system/Observation.rs"
    assert form["client_assertion_type"] == ASSERTION_TYPE
    assert set(form) == {"grant_type", "scope", "client_assertion_type", "client_assertion"}

    assertion = form["client_assertion"]
    header = jwt.get_unverified_header(assertion)
    assert header == {"alg": alg, "kid": "key-2026", "typ": "JWT"}
    claims = jwt.decode(
        assertion,
        key.public_key(),
        algorithms=[alg],
        audience=TOKEN_URL,
        options={"verify_exp": False},
    )
    assert claims["iss"] == claims["sub"] == "fhirgate-backend"
    assert claims["aud"] == TOKEN_URL
    assert clock.now < claims["exp"] <= clock.now + 300
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16
    # The real clock: a freshly built assertion verifies with exp checking too.
    real = _auth(key, time.time, algorithm=alg)
    jwt.decode(real.assertion(), key.public_key(), algorithms=[alg], audience=TOKEN_URL)


def test_jti_is_unique(rsa_key: rsa.RSAPrivateKey, clock: Clock) -> None:
    auth = _auth(rsa_key, clock)
    jtis = {jwt.decode(auth.assertion(), options={"verify_signature": False})["jti"] for _ in range(20)}
    assert len(jtis) == 20


def test_token_cached_until_shortly_before_expiry(
    rsa_key: rsa.RSAPrivateKey, clock: Clock, mock: respx.MockRouter
) -> None:
    route = mock.post(TOKEN_URL).mock(side_effect=[_token_response("tok-1", 300), _token_response("tok-2", 300)])
    auth = _auth(rsa_key, clock, refresh_margin=30)
    assert auth.headers()["Authorization"] == "Bearer tok-1"
    clock.now += 269
    assert auth.headers()["Authorization"] == "Bearer tok-1"
    assert route.call_count == 1
    clock.now += 1  # 30 s before expiry: refresh
    assert auth.headers()["Authorization"] == "Bearer tok-2"
    assert route.call_count == 2
    # each token request carries a new assertion
    jtis = {
        jwt.decode(_form(c.request)["client_assertion"], options={"verify_signature": False})["jti"]
        for c in route.calls
    }
    assert len(jtis) == 2


def test_invalidate_forces_a_new_token(rsa_key: rsa.RSAPrivateKey, clock: Clock, mock: respx.MockRouter) -> None:
    route = mock.post(TOKEN_URL).mock(side_effect=[_token_response("tok-1"), _token_response("tok-2")])
    auth = _auth(rsa_key, clock)
    assert auth.headers()["Authorization"] == "Bearer tok-1"
    auth.invalidate()
    assert auth.headers()["Authorization"] == "Bearer tok-2"
    assert route.call_count == 2


def test_token_endpoint_discovered_from_smart_configuration(
    ec_key: ec.EllipticCurvePrivateKey, clock: Clock, mock: respx.MockRouter
) -> None:
    discovered = "https://login.example.org/token"
    config = mock.get(f"{FHIR_BASE}/.well-known/smart-configuration").mock(
        return_value=httpx.Response(
            200,
            json={
                "token_endpoint": discovered,
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
            },
        )
    )
    token = mock.post(discovered).mock(return_value=_token_response())
    auth = _auth(ec_key, clock, algorithm="ES384", fhir_base=FHIR_BASE + "/")
    assert config.call_count == 0  # no I/O in the constructor
    assert auth.headers()["Authorization"] == "Bearer tok-1"
    assert auth.token_endpoint == discovered
    assertion = _form(token.calls.last.request)["client_assertion"]
    assert jwt.decode(
        assertion, ec_key.public_key(), algorithms=["ES384"], audience=discovered, options={"verify_exp": False}
    )
    auth.invalidate()
    mock.post(discovered).mock(return_value=_token_response("tok-2"))
    auth.headers()
    assert config.call_count == 1  # discovered once


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ({"issuer": "x"}, UpstreamMalformed),
        ({"token_endpoint": "http://login.example.org/token"}, ConfigError),
        ({"token_endpoint": TOKEN_URL, "token_endpoint_auth_signing_alg_values_supported": ["RS256"]}, ConfigError),
    ],
)
def test_discovery_failures(
    config: dict[str, object], error: type[Exception], rsa_key: rsa.RSAPrivateKey, clock: Clock, mock: respx.MockRouter
) -> None:
    mock.get(f"{FHIR_BASE}/.well-known/smart-configuration").mock(return_value=httpx.Response(200, json=config))
    with pytest.raises(error):
        _auth(rsa_key, clock, fhir_base=FHIR_BASE).headers()


def test_discovery_not_found(rsa_key: rsa.RSAPrivateKey, clock: Clock, mock: respx.MockRouter) -> None:
    mock.get(f"{FHIR_BASE}/.well-known/smart-configuration").mock(return_value=httpx.Response(404, text=PHI))
    with pytest.raises(UpstreamUnavailable) as info:
        _auth(rsa_key, clock, fhir_base=FHIR_BASE).headers()
    assert "fhir.example.org" in str(info.value) and "discovery" in str(info.value) and PHI not in str(info.value)


@pytest.mark.parametrize(
    ("response", "error", "expected"),
    [
        (
            httpx.Response(401, json={"error": "invalid_client", "error_description": f"unknown client for {PHI}"}),
            UpstreamAuthFailed,
            "HTTP 401, error invalid_client",
        ),
        (httpx.Response(400, json={"error": f"weird {PHI}"}), UpstreamAuthFailed, "HTTP 400)"),
        (httpx.Response(500, text=PHI), UpstreamUnavailable, "HTTP 500"),
        (httpx.Response(200, text=f"<html>{PHI}</html>"), UpstreamMalformed, "not JSON"),
        (httpx.Response(200, json={"access_token": "t", "token_type": "mac"}), UpstreamMalformed, "not a bearer"),
        (httpx.Response(200, json={"token_type": "bearer", "patient": PHI}), UpstreamMalformed, "access_token"),
        (
            httpx.Response(200, json={"access_token": "t", "token_type": "bearer", "expires_in": "soon"}),
            UpstreamMalformed,
            "expires_in",
        ),
    ],
)
def test_token_endpoint_failures(
    response: httpx.Response,
    error: type[Exception],
    expected: str,
    rsa_key: rsa.RSAPrivateKey,
    clock: Clock,
    mock: respx.MockRouter,
) -> None:
    mock.post(TOKEN_URL).mock(return_value=response)
    with pytest.raises(error) as info:
        _auth(rsa_key, clock).headers()
    message = str(info.value)
    assert expected in message
    assert message.startswith("upstream auth.example.org: token: ")
    assert PHI not in message and "unknown client" not in message


@pytest.mark.parametrize("exc", [httpx.ConnectTimeout("slow"), httpx.ConnectError("refused")])
def test_token_endpoint_unreachable(
    exc: Exception, rsa_key: rsa.RSAPrivateKey, clock: Clock, mock: respx.MockRouter
) -> None:
    mock.post(TOKEN_URL).mock(side_effect=exc)
    with pytest.raises(UpstreamUnavailable, match=r"auth\.example\.org: token: (timed out|could not connect)"):
        _auth(rsa_key, clock).headers()


def test_algorithm_and_key_checks(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey, clock: Clock) -> None:
    for alg in ("RS256", "ES256", "HS256", "none", "PS384"):
        with pytest.raises(ConfigError, match="not supported"):
            _auth(rsa_key, clock, algorithm=alg)
    with pytest.raises(ConfigError, match="RSA"):
        _auth(ec_key, clock, algorithm="RS384")
    with pytest.raises(ConfigError, match="P-384"):
        _auth(rsa_key, clock, algorithm="ES384")
    with pytest.raises(ConfigError, match="P-384"):
        _auth(ec.generate_private_key(ec.SECP256R1()), clock, algorithm="ES384")
    with pytest.raises(ConfigError, match="2048"):
        _auth(rsa.generate_private_key(public_exponent=65537, key_size=1024), clock)
    with pytest.raises(ConfigError, match="PEM"):
        _auth(rsa_key, clock, private_key="not a key")


def test_configuration_checks(rsa_key: rsa.RSAPrivateKey, clock: Clock) -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        _auth(rsa_key, clock, fhir_base=FHIR_BASE, token_endpoint=TOKEN_URL)
    with pytest.raises(ConfigError, match="https"):
        _auth(rsa_key, clock, token_endpoint="http://auth.example.org/token")
    _auth(rsa_key, clock, token_endpoint="http://localhost:8080/token")  # loopback may be plain http
    with pytest.raises(ConfigError, match="scope"):
        _auth(rsa_key, clock, scopes="")
    with pytest.raises(ConfigError, match="scope"):
        _auth(rsa_key, clock, scopes=['system/*.rs "x"'])
    with pytest.raises(ConfigError, match="client_id"):
        _auth(rsa_key, clock, client_id="")
    with pytest.raises(ConfigError, match="kid"):
        _auth(rsa_key, clock, kid="")
    auth = _auth(rsa_key, clock)
    assert "PRIVATE" not in repr(auth)


def test_static_token_auth() -> None:
    auth = StaticTokenAuth("abc.def-ghi")
    assert auth.headers() == {"Authorization": "Bearer abc.def-ghi"}
    auth.invalidate()
    assert auth.headers() == {"Authorization": "Bearer abc.def-ghi"}
    assert "abc" not in repr(auth)
    for bad in ("", "has space", "line\nbreak"):
        with pytest.raises(ConfigError):
            StaticTokenAuth(bad)


def test_both_implement_the_protocol(rsa_key: rsa.RSAPrivateKey, clock: Clock) -> None:
    assert isinstance(StaticTokenAuth("t"), UpstreamAuth)
    assert isinstance(_auth(rsa_key, clock), UpstreamAuth)
