"""Bearer-token verification: every way a token can be wrong, and good RS256/ES256 tokens."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fhirgate.auth.tokens import TokenVerifier, TrustedIssuer
from fhirgate.core.policy.principal import Principal
from fhirgate.errors import AuthenticationError, ConfigError

ISS = "https://idp.example.org"
AUD = "https://fhirgate.example.org/mcp"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def pem(key: Any) -> str:
    return str(
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def jwk(key: Any, kid: str) -> dict[str, Any]:
    data = json.loads(
        jwt.algorithms.get_default_algorithms()["RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"].to_jwk(
            key.public_key()
        )
    )
    return {**data, "kid": kid, "use": "sig"}  # fmt: skip


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISS,
        "sub": "practitioner-1",
        "aud": AUD,
        "iat": now,
        "exp": now + 600,
        "scope": "openid fhirUser user/Observation.rs",
        "client_id": "app-1",
        "jti": "t-1",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: Any, alg: str = "RS256", kid: str | None = "k1", **over: Any) -> str:
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims(**over), key, algorithm=alg, headers=headers)


@pytest.fixture(scope="module")
def verifier(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> TokenVerifier:
    jwks = {"keys": [jwk(rsa_key, "k1"), jwk(ec_key, "e1")]}
    return TokenVerifier([TrustedIssuer(ISS, jwks=jwks)], AUD)


def reason_of(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(AuthenticationError) as info:
        verifier.verify(token)
    if len(token) > 8:
        assert token not in info.value.message
    return info.value.reason


def sign_raw(key: rsa.RSAPrivateKey, payload: dict[str, Any]) -> str:
    """RS256-sign an arbitrary payload, bypassing PyJWT's own claim checks on encode."""
    head = b64({"alg": "RS256", "typ": "JWT", "kid": "k1"})
    body = b64(payload)
    algo = jwt.algorithms.get_default_algorithms()["RS256"]
    signing_input = f"{head}.{body}".encode()
    return f"{head}.{body}.{b64(algo.sign(signing_input, key))}"


def b64(data: dict[str, Any] | list[Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# ------------------------------------------------------------------ good tokens


def test_good_rs256_token(verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    token = sign(
        rsa_key,
        fhirUser="https://ehr.example.org/fhir/Practitioner/9",
        patient="p1",
        purpose_of_use=["TREAT"],
        encounter="Encounter/e1",
    )
    principal = verifier.verify(token)
    assert isinstance(principal, Principal)
    assert principal.sub == "practitioner-1"
    assert principal.issuer == ISS
    assert principal.client_id == "app-1"
    assert principal.fhir_user == "Practitioner/9"
    assert principal.patient == "p1"
    assert principal.purpose_of_use == ("TREAT",)
    assert principal.token_id == "t-1"
    assert principal.expires_at is not None
    assert principal.expires_at > time.time()
    assert principal.extra == {"encounter": "e1"}
    assert [s.raw for s in principal.scopes.resources] == ["user/Observation.rs"]
    assert principal.subject_key == f"{ISS}#practitioner-1"


def test_good_es256_token(verifier: TokenVerifier, ec_key: ec.EllipticCurvePrivateKey) -> None:
    principal = verifier.verify(sign(ec_key, "ES256", kid="e1"))
    assert principal.sub == "practitioner-1"


def test_audience_list_and_scp_list_and_azp(verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    token = sign(rsa_key, aud=["https://other.example", AUD], scope=None, scp=["patient/*.rs", "launch/patient"],
                 client_id=None, azp="app-2", purpose_of_use="TREAT ETREAT")  # fmt: skip
    principal = verifier.verify(token)
    assert principal.client_id == "app-2"
    assert principal.scopes.raw == "patient/*.rs launch/patient"
    assert principal.purpose_of_use == ("TREAT", "ETREAT")


def test_token_without_iat_and_kid_is_accepted(verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    assert verifier.verify(sign(rsa_key, kid=None, iat=None)).sub == "practitioner-1"


def test_public_key_pem_issuer(ec_key: ec.EllipticCurvePrivateKey) -> None:
    v = TokenVerifier([TrustedIssuer(ISS, public_key_pem=pem(ec_key), algorithms=("ES256",))], AUD)
    assert v.verify(sign(ec_key, "ES256")).sub == "practitioner-1"


def test_leeway_tolerates_small_clock_skew(verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    now = int(time.time())
    assert verifier.verify(sign(rsa_key, exp=now - 5)).sub
    assert verifier.verify(sign(rsa_key, nbf=now + 5, iat=now + 5)).sub


# ------------------------------------------------------------------ bad tokens


def test_expired(verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    now = int(time.time())
    assert reason_of(verifier, sign(rsa_key, iat=now - 7200, exp=now - 3600)) == "token.expired"


def test_not_yet_valid(verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    now = int(time.time())
    assert reason_of(verifier, sign(rsa_key, nbf=now + 3600)) == "token.not_yet_valid"
    assert reason_of(verifier, sign(rsa_key, iat=now + 3600)) == "token.not_yet_valid"


@pytest.mark.parametrize(
    "aud",
    [
        "https://other.example.org/mcp",
        AUD + "/",  # exact match only (RFC 8707)
        AUD.upper(),
        "https://fhirgate.example.org",
        ["https://a.example", "https://b.example"],
        [],
        [AUD + "x"],
        [1, 2],
    ],
)
def test_wrong_audience(verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey, aud: Any) -> None:
    reason = reason_of(verifier, sign(rsa_key, aud=aud))
    assert reason in ("token.wrong_audience", "token.missing_claim") if aud == [] else reason == "token.wrong_audience"


def test_unknown_issuer(verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    assert reason_of(verifier, sign(rsa_key, iss="https://evil.example")) == "token.unknown_issuer"
    assert reason_of(verifier, sign(rsa_key, iss=ISS + "/")) == "token.unknown_issuer"
    assert reason_of(verifier, sign_raw(rsa_key, claims(iss=["x"]))) == "token.unknown_issuer"
    assert reason_of(verifier, sign_raw(rsa_key, claims(iss=[ISS]))) == "token.unknown_issuer"


def test_bad_signature_other_key(verifier: TokenVerifier, other_rsa_key: rsa.RSAPrivateKey) -> None:
    assert reason_of(verifier, sign(other_rsa_key)) == "token.bad_signature"
    assert reason_of(verifier, sign(other_rsa_key, kid=None)) == "token.bad_signature"
    assert reason_of(verifier, sign(other_rsa_key, kid="unknown")) == "token.bad_signature"


def test_tampered_payload(verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    header, _, signature = sign(rsa_key).split(".")
    forged = b64(claims(scope="system/*.*"))
    assert reason_of(verifier, f"{header}.{forged}.{signature}") == "token.bad_signature"


def test_kid_of_ec_key_with_rs256_does_not_verify(verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    assert reason_of(verifier, sign(rsa_key, kid="e1")) == "token.bad_signature"


def test_alg_none(verifier: TokenVerifier) -> None:
    token = jwt.encode(claims(), None, algorithm="none")  # type: ignore[arg-type]
    assert reason_of(verifier, token) == "token.alg_not_allowed"
    for alg in ["none", "None", "NONE", ""]:
        unsigned = f"{b64({'alg': alg, 'typ': 'JWT'})}.{b64(claims())}."
        assert reason_of(verifier, unsigned) == "token.alg_not_allowed"


def test_hs256_key_confusion(verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    """The classic attack: HMAC-sign with the RSA public key (which is public) as the secret."""
    secret = pem(rsa_key).encode()
    header = b64({"alg": "HS256", "typ": "JWT", "kid": "k1"})
    payload = b64(claims(scope="system/*.*"))
    import hashlib
    import hmac

    sig = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    token = f"{header}.{payload}.{b64(sig)}"
    assert reason_of(verifier, token) == "token.alg_not_allowed"
    for alg in ["HS384", "HS512"]:
        assert reason_of(verifier, jwt.encode(claims(), "s" * 64, algorithm=alg)) == "token.alg_not_allowed"


def test_alg_refused_before_any_key_lookup(rsa_key: rsa.RSAPrivateKey) -> None:
    """An HS256 token never reaches the JWKS fetch (the URL here is unreachable)."""
    v = TokenVerifier([TrustedIssuer(ISS, jwks_url="http://127.0.0.1:9/jwks", fetch_timeout=0.2)], AUD)
    hs = jwt.encode(claims(), "x" * 64, algorithm="HS256")
    assert reason_of(v, hs) == "token.alg_not_allowed"


def test_alg_not_configured_for_issuer(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> None:
    v = TokenVerifier([TrustedIssuer(ISS, public_key_pem=pem(rsa_key), algorithms=("RS256",))], AUD)
    assert reason_of(v, sign(ec_key, "ES256")) == "token.alg_not_allowed"
    assert reason_of(v, sign(rsa_key, "PS256")) == "token.alg_not_allowed"


@pytest.mark.parametrize("missing", ["exp", "sub", "aud", "iss"])
def test_missing_claims(verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey, missing: str) -> None:
    over: dict[str, Any] = {missing: None}
    assert reason_of(verifier, sign(rsa_key, **over)) == "token.missing_claim"


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "abc",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "....",
        "Bearer x.y.z",
        "eyJhbGciOiJSUzI1NiJ9.eyJ9.sig",
        f"{b64(b'not json')}.{b64(claims())}.sig",
        f"{b64([1, 2])}.{b64(claims())}.sig",
        f"{b64({'alg': 'RS256'})}.{b64(b'[1,2]')}.c2ln",
        f"{b64({'alg': 'RS256'})}.{b64(b'not json')}.c2ln",
        f"{b64({'alg': 5})}.{b64(claims())}.c2ln",
        f"{b64({'alg': 'RS256', 'kid': 7})}.{b64(claims())}.c2ln",
        "x" * 20000,
        "\u00e9.\u00e9.\u00e9",
    ],
)
def test_garbage(verifier: TokenVerifier, garbage: str) -> None:
    assert reason_of(verifier, garbage) == "token.malformed"


def test_non_string_token(verifier: TokenVerifier) -> None:
    with pytest.raises(AuthenticationError) as info:
        verifier.verify(None)  # type: ignore[arg-type]
    assert info.value.reason == "token.malformed"


@pytest.mark.parametrize(
    "over",
    [
        {"exp": "tomorrow"},
        {"iat": "now"},
        {"sub": 42},
        {"sub": ""},
        {"scope": ["user/*.rs"]},
        {"scp": "x", "scope": 7},
        {"fhirUser": "Organization/1"},
        {"fhirUser": "not a reference"},
        {"patient": "../../etc"},
        {"patient": 12},
        {"purpose_of_use": [1]},
        {"jti": 5},
    ],
)
def test_claims_with_wrong_shape(verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey, over: dict[str, Any]) -> None:
    assert reason_of(verifier, sign(rsa_key, **over)) in ("token.malformed", "token.invalid_claim")


def test_message_carries_no_token_contents(verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    token = sign(rsa_key, aud="https://other.example.org", sub="alice-smith")
    with pytest.raises(AuthenticationError) as info:
        verifier.verify(token)
    assert "alice" not in str(info.value)
    assert "other.example" not in str(info.value)


# ------------------------------------------------------------------ configuration


def test_issuer_config_is_checked(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ConfigError):
        TrustedIssuer(ISS)
    with pytest.raises(ConfigError):
        TrustedIssuer(ISS, jwks={"keys": []}, public_key_pem=pem(rsa_key))
    with pytest.raises(ConfigError):
        TrustedIssuer(ISS, public_key_pem=pem(rsa_key), algorithms=("HS256",))
    with pytest.raises(ConfigError):
        TrustedIssuer(ISS, public_key_pem=pem(rsa_key), algorithms=("none",))
    with pytest.raises(ConfigError):
        TrustedIssuer(ISS, public_key_pem="not a pem")
    with pytest.raises(ConfigError):
        TrustedIssuer(ISS, jwks={"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})
    with pytest.raises(ConfigError):
        TrustedIssuer(ISS, jwks_url="file:///etc/passwd")
    with pytest.raises(ConfigError):
        TokenVerifier([TrustedIssuer(ISS, public_key_pem=pem(rsa_key))], "")
    with pytest.raises(ConfigError):
        TokenVerifier(
            [TrustedIssuer(ISS, public_key_pem=pem(rsa_key)), TrustedIssuer(ISS, public_key_pem=pem(rsa_key))], AUD
        )


def test_two_issuers_do_not_share_keys(rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey) -> None:
    v = TokenVerifier(
        [
            TrustedIssuer(ISS, public_key_pem=pem(rsa_key)),
            TrustedIssuer("https://idp2.example", public_key_pem=pem(other_rsa_key)),
        ],
        AUD,
    )
    assert v.verify(sign(other_rsa_key, iss="https://idp2.example")).issuer == "https://idp2.example"
    # a token from issuer 2's key claiming issuer 1 fails
    assert reason_of(v, sign(other_rsa_key)) == "token.bad_signature"


# ------------------------------------------------------------------ JWKS over HTTP


class _JwksServer:
    def __init__(self, body: bytes, delay: float = 0.0) -> None:
        self.body = body
        self.delay = delay
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                if outer.delay:
                    time.sleep(outer.delay)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(outer.body)  # the client may have given up (timeout test)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def jwks_server(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> Iterator[_JwksServer]:
    server = _JwksServer(json.dumps({"keys": [jwk(rsa_key, "k1"), jwk(ec_key, "e1")]}).encode())
    yield server
    server.close()


def test_jwks_url_verifies_and_caches(
    jwks_server: _JwksServer, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    v = TokenVerifier([TrustedIssuer(ISS, jwks_url=jwks_server.url)], AUD)
    assert v.may_block
    for _ in range(3):
        assert v.verify(sign(rsa_key)).sub == "practitioner-1"
        assert v.verify(sign(ec_key, "ES256", kid="e1")).sub == "practitioner-1"
    assert jwks_server.hits == 1


def test_jwks_url_unknown_kid_and_bad_signature(jwks_server: _JwksServer, other_rsa_key: rsa.RSAPrivateKey) -> None:
    v = TokenVerifier([TrustedIssuer(ISS, jwks_url=jwks_server.url)], AUD)
    assert reason_of(v, sign(other_rsa_key, kid="nope")) == "token.bad_signature"
    assert reason_of(v, sign(other_rsa_key, kid="k1")) == "token.bad_signature"
    assert reason_of(v, sign(other_rsa_key, kid=None)) == "token.bad_signature"


def test_jwks_url_unreachable(rsa_key: rsa.RSAPrivateKey) -> None:
    server = _JwksServer(b"{}")
    url = server.url
    server.close()  # nothing listens there now
    v = TokenVerifier([TrustedIssuer(ISS, jwks_url=url, fetch_timeout=1.0)], AUD)
    assert reason_of(v, sign(rsa_key)) == "issuer.unreachable"


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"keys": []}', b'{"keys": [{"kty": "RSA"}]}'])
def test_jwks_url_bad_document(rsa_key: rsa.RSAPrivateKey, body: bytes) -> None:
    server = _JwksServer(body)
    try:
        v = TokenVerifier([TrustedIssuer(ISS, jwks_url=server.url)], AUD)
        assert reason_of(v, sign(rsa_key)) == "issuer.unreachable"
    finally:
        server.close()


def test_jwks_fetch_timeout_is_bounded(rsa_key: rsa.RSAPrivateKey) -> None:
    server = _JwksServer(b'{"keys": []}', delay=1.5)
    try:
        v = TokenVerifier([TrustedIssuer(ISS, jwks_url=server.url, fetch_timeout=0.3)], AUD)
        started = time.monotonic()
        assert reason_of(v, sign(rsa_key)) == "issuer.unreachable"
        assert time.monotonic() - started < 1.4
    finally:
        server.close()
