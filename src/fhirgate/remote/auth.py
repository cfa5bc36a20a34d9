"""fhirgate's own credentials for an upstream FHIR server: SMART Backend Services, or a static token.

fhirgate talks to the upstream as ONE confidential client of its own (SMART App Launch 2.x "Backend
Services", https://hl7.org/fhir/smart-app-launch/backend-services.html): it signs a short-lived JWT client
assertion (RFC 7523 §2.2; iss = sub = client_id, aud = the token endpoint, exp at most five minutes ahead,
a fresh jti) with its private key (RS384 or ES384, the two algorithms SMART requires servers to support),
exchanges it for an access token with `grant_type=client_credentials`, caches that token until shortly
before `expires_in`, and fetches a new one when it is about to expire or the upstream answered 401.

The MCP client's bearer token is NEVER forwarded upstream. It was issued for fhirgate (its `aud` is this
server, RFC 8707) and passing it through is forbidden ("token passthrough", MCP Security Best Practices;
MCP Authorization: "MUST NOT pass through the token it received from the MCP client"). Access upstream is
therefore bounded by the scopes granted to fhirgate's own client; fhirgate's policy layer narrows every
request per principal on top of that.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import httpx
import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from fhirgate.errors import ConfigError
from fhirgate.remote.errors import UpstreamAuthFailed, UpstreamMalformed, UpstreamRateLimited, UpstreamUnavailable

__all__ = [
    "ASSERTION_TYPE",
    "SUPPORTED_ALGORITHMS",
    "BackendServicesAuth",
    "StaticTokenAuth",
    "UpstreamAuth",
]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SUPPORTED_ALGORITHMS = ("RS384", "ES384")
ASSERTION_LIFETIME_SECONDS = 300  # SMART Backend Services: exp no more than five minutes in the future
_DEFAULT_EXPIRES_IN = 300  # when a token response omits expires_in
_MAX_BODY = 1 << 20
# RFC 6749 §3.3 scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN_RE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")
# RFC 6749 §5.2 error codes (the only upstream text a token failure message carries).
_OAUTH_ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
    }
)
_TOKEN_RE = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")  # RFC 6750 §2.1 b64token


@runtime_checkable
class UpstreamAuth(Protocol):
    """How fhirgate authenticates to the upstream FHIR server (never with the MCP client's token)."""

    def headers(self) -> dict[str, str]:
        """Headers to add to an upstream request (Authorization); may fetch a token."""
        ...

    def invalidate(self) -> None:
        """Drop any cached token: the upstream answered 401, so the next `headers()` gets a new one."""
        ...


class StaticTokenAuth:
    """A fixed bearer token (for upstreams configured with a long-lived token; invalidate cannot renew it)."""

    def __init__(self, token: str) -> None:
        if not isinstance(token, str) or not _TOKEN_RE.match(token):
            raise ConfigError("upstream static token: must be a non-empty bearer token (RFC 6750 b64token)")
        self._token = token

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def invalidate(self) -> None:
        """Nothing to refresh: a second 401 surfaces as UpstreamAuthFailed."""

    def __repr__(self) -> str:
        return "StaticTokenAuth(<redacted>)"


def _host(url: str) -> str:
    try:
        return httpx.URL(url).host or "unknown-host"
    except httpx.InvalidURL:
        return "unknown-host"


def _check_endpoint(url: str, what: str) -> str:
    """An absolute https URL (plain http only to a loopback host, for development and tests)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise ConfigError(f"{what}: not a valid URL") from None
    loopback = parsed.host in ("localhost", "127.0.0.1", "::1")
    if not parsed.host or not (parsed.scheme == "https" or (parsed.scheme == "http" and loopback)):
        raise ConfigError(f"{what}: must be an https URL (http only to localhost)")
    if parsed.fragment:
        raise ConfigError(f"{what}: must not carry a fragment")
    return url


def _load_key(pem: str | bytes, algorithm: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    if algorithm not in SUPPORTED_ALGORITHMS:
        raise ConfigError(
            f"upstream auth: algorithm {algorithm!r} is not supported (allowed: {', '.join(SUPPORTED_ALGORITHMS)})"
        )
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigError("upstream auth: private_key is not an unencrypted PEM private key") from None
    if algorithm == "RS384":
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigError("upstream auth: RS384 needs an RSA private key")
        if key.key_size < 2048:
            raise ConfigError("upstream auth: the RSA key must have at least 2048 bits")
        return key
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP384R1):
        raise ConfigError("upstream auth: ES384 needs an EC private key on curve P-384")
    return key


def _scope_string(scopes: str | Sequence[str]) -> str:
    parts = scopes.split() if isinstance(scopes, str) else list(scopes)
    if not parts or not all(isinstance(p, str) and _SCOPE_TOKEN_RE.match(p) for p in parts):
        raise ConfigError("upstream auth: scopes must be one or more scope tokens (e.g. system/*.rs)")
    return " ".join(parts)


class BackendServicesAuth:
    """SMART Backend Services client credentials with a signed JWT assertion (RFC 7523), tokens cached.

    Give `token_endpoint`, or `fhir_base` to discover it from `<fhir_base>/.well-known/smart-configuration`
    on first use. Safe to share between threads (one token fetch at a time).
    """

    def __init__(
        self,
        *,
        client_id: str,
        private_key: str | bytes,
        kid: str,
        scopes: str | Sequence[str],
        algorithm: str = "RS384",
        token_endpoint: str | None = None,
        fhir_base: str | None = None,
        timeout: float = 10.0,
        refresh_margin: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(client_id, str) or not client_id:
            raise ConfigError("upstream auth: client_id must be a non-empty string")
        if not isinstance(kid, str) or not kid:
            raise ConfigError("upstream auth: kid must be a non-empty string")
        if (token_endpoint is None) == (fhir_base is None):
            raise ConfigError("upstream auth: give exactly one of token_endpoint and fhir_base (for discovery)")
        if not 0 <= refresh_margin < ASSERTION_LIFETIME_SECONDS:
            raise ConfigError("upstream auth: refresh_margin must be between 0 and 300 seconds")
        self._key = _load_key(private_key, algorithm)
        self.client_id = client_id
        self.kid = kid
        self.algorithm = algorithm
        self.scope = _scope_string(scopes)
        self._token_endpoint = None if token_endpoint is None else _check_endpoint(token_endpoint, "token_endpoint")
        self._fhir_base = None if fhir_base is None else _check_endpoint(fhir_base, "fhir_base").rstrip("/")
        self._refresh_margin = refresh_margin
        self._clock = clock
        self._http = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False)
        self._timeout = timeout
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0

    def __repr__(self) -> str:
        return f"BackendServicesAuth(client_id={self.client_id!r}, kid={self.kid!r}, alg={self.algorithm})"

    @property
    def token_endpoint(self) -> str:
        """The token endpoint, discovered from the FHIR server's SMART configuration if not configured."""
        with self._lock:
            return self._endpoint()

    def headers(self) -> dict[str, str]:
        with self._lock:
            if self._token is None or self._clock() >= self._expires_at - self._refresh_margin:
                self._token, self._expires_at = self._fetch_token()
            return {"Authorization": f"Bearer {self._token}"}

    def invalidate(self) -> None:
        with self._lock:
            self._token = None
            self._expires_at = 0.0

    def close(self) -> None:
        self._http.close()

    def assertion(self) -> str:
        """A fresh signed client assertion for the token endpoint (exposed for tests and diagnostics)."""
        with self._lock:
            return self._assertion(self._endpoint())

    # -- internals (called with the lock held) ------------------------------------------------------

    def _assertion(self, audience: str) -> str:
        now = int(self._clock())
        claims: dict[str, Any] = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": audience,
            "exp": now + ASSERTION_LIFETIME_SECONDS,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._key, algorithm=self.algorithm, headers={"kid": self.kid, "typ": "JWT"})

    def _endpoint(self) -> str:
        if self._token_endpoint is None:
            assert self._fhir_base is not None
            self._token_endpoint = self._discover(self._fhir_base)
        return self._token_endpoint

    def _discover(self, base: str) -> str:
        url = f"{base}/.well-known/smart-configuration"
        host = _host(url)
        body = self._call("discovery", host, lambda: self._http.get(url, headers={"Accept": "application/json"}))
        if body.status_code != 200:
            raise UpstreamUnavailable(
                f"the SMART configuration could not be fetched (HTTP {body.status_code})",
                host=host,
                interaction="discovery",
                status=body.status_code,
            )
        config = _json_object(body, host, "discovery")
        endpoint = config.get("token_endpoint")
        if not isinstance(endpoint, str):
            raise UpstreamMalformed("the SMART configuration has no token_endpoint", host=host, interaction="discovery")
        _check_endpoint(endpoint, "discovered token_endpoint")
        algs = config.get("token_endpoint_auth_signing_alg_values_supported")
        if isinstance(algs, list) and algs and self.algorithm not in algs:
            raise ConfigError(f"upstream auth: the authorization server does not accept {self.algorithm} assertions")
        return endpoint

    def _call(self, interaction: str, host: str, send: Callable[[], httpx.Response]) -> httpx.Response:
        try:
            return send()
        except httpx.TimeoutException:
            raise UpstreamUnavailable(
                f"timed out after {self._timeout:g}s", host=host, interaction=interaction
            ) from None
        except httpx.TransportError:
            raise UpstreamUnavailable("could not connect", host=host, interaction=interaction) from None

    def _fetch_token(self) -> tuple[str, float]:
        endpoint = self._endpoint()
        host = _host(endpoint)
        form = {
            "grant_type": "client_credentials",
            "scope": self.scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self._assertion(endpoint),
        }
        started = self._clock()
        response = self._call(
            "token", host, lambda: self._http.post(endpoint, data=form, headers={"Accept": "application/json"})
        )
        status = response.status_code
        if status == 429:
            raise UpstreamRateLimited(
                "the token request was throttled (HTTP 429)", host=host, interaction="token", status=status
            )
        if status >= 500:
            raise UpstreamUnavailable(f"the token endpoint failed (HTTP {status})", host=host, interaction="token")
        if status != 200:
            error = _oauth_error(response)
            detail = f", error {error}" if error else ""
            raise UpstreamAuthFailed(
                f"the token request was refused (HTTP {status}{detail})", host=host, interaction="token", status=status
            )
        body = _json_object(response, host, "token")
        token = body.get("access_token")
        token_type = body.get("token_type")
        expires_in = body.get("expires_in", _DEFAULT_EXPIRES_IN)
        if not isinstance(token, str) or not _TOKEN_RE.match(token):
            raise UpstreamMalformed("the token response has no usable access_token", host=host, interaction="token")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise UpstreamMalformed("the token response is not a bearer token", host=host, interaction="token")
        if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
            raise UpstreamMalformed("the token response has an invalid expires_in", host=host, interaction="token")
        return token, started + float(expires_in)


def _json_object(response: httpx.Response, host: str, interaction: str) -> dict[str, Any]:
    content = response.content
    if len(content) > _MAX_BODY:
        raise UpstreamMalformed("the response is too large", host=host, interaction=interaction)
    try:
        value = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise UpstreamMalformed("the response is not JSON", host=host, interaction=interaction) from None
    if not isinstance(value, dict):
        raise UpstreamMalformed("the response is not a JSON object", host=host, interaction=interaction)
    return value


def _oauth_error(response: httpx.Response) -> str | None:
    try:
        value = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None
    error = value.get("error") if isinstance(value, dict) else None
    return error if isinstance(error, str) and error in _OAUTH_ERRORS else None
