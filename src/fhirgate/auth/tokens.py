"""Bearer-token verification: signed JWT access tokens from trusted issuers become a Principal.

fhirgate is an OAuth 2.1 resource server (MCP 2025-06-18+ "Authorization"). A token is accepted only
if it is signed with an asymmetric algorithm by a configured issuer's key, is within its validity
window, and names this server in `aud` (RFC 8707 resource indicators, MCP "Token Audience Binding").
`alg=none` and every HMAC algorithm are refused before any key lookup (RFC 8725 §2.1, §3.1: the
classic key-confusion attack signs HS256 with the RSA public key as the secret).

`McpTokenVerifier` adapts `TokenVerifier` to the MCP SDK's `TokenVerifier` protocol; the SDK
stores the returned AccessToken in a contextvar, and `current_principal()` reads the Principal back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import anyio.to_thread
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from pydantic import ConfigDict, Field, SkipValidation

from fhirgate.auth.principal_builder import ROLE_CLAIM, principal_from_claims
from fhirgate.core.policy.principal import Principal
from fhirgate.errors import AuthenticationError, ConfigError

log = logging.getLogger(__name__)

# RFC 7518 §3.1 asymmetric JWS algorithms; HS*/none are never allowed (RFC 8725 §3.1).
ASYMMETRIC_ALGORITHMS: frozenset[str] = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_KEY_TYPES: dict[str, tuple[type[Any], ...]] = {
    "RS": (rsa.RSAPublicKey,),
    "PS": (rsa.RSAPublicKey,),
    "ES": (ec.EllipticCurvePublicKey,),
    "Ed": (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey),
}
_MAX_TOKEN_LENGTH = 16384
_JWKS_TIMEOUT_SECONDS = 5.0
_JWKS_LIFESPAN_SECONDS = 300.0
_REQUIRED_CLAIMS = ["exp", "iss", "sub", "aud"]


def _fail(reason: str, message: str) -> AuthenticationError:
    return AuthenticationError(message, reason=reason)


def _key_fits(alg: str, key: Any) -> bool:
    """True when the public key's type matches the algorithm family (no RSA key for ES256, etc.)."""
    return isinstance(key, _KEY_TYPES.get(alg[:2], ()))


def _is_public_signing_key(key: Any) -> bool:
    return any(isinstance(key, types) for types in _KEY_TYPES.values())


class TrustedIssuer:
    """An authorization server whose tokens are accepted, with exactly one source of public keys."""

    def __init__(
        self,
        issuer: str,
        *,
        jwks_url: str | None = None,
        jwks: dict[str, Any] | None = None,
        public_key_pem: str | None = None,
        algorithms: tuple[str, ...] = ("RS256", "ES256"),
        fetch_timeout: float = _JWKS_TIMEOUT_SECONDS,
    ) -> None:
        if not isinstance(issuer, str) or not issuer:
            raise ConfigError("trusted issuer: 'issuer' must be a non-empty string")
        if sum(x is not None for x in (jwks_url, jwks, public_key_pem)) != 1:
            raise ConfigError(f"trusted issuer {issuer}: give exactly one of jwks_url, jwks, public_key_pem")
        bad = [a for a in algorithms if a not in ASYMMETRIC_ALGORITHMS]
        if bad or not algorithms:
            raise ConfigError(
                f"trusted issuer {issuer}: algorithms must be asymmetric "
                f"({', '.join(sorted(ASYMMETRIC_ALGORITHMS))}); got {', '.join(bad) or 'none'}"
            )
        self.issuer = issuer
        self.algorithms = tuple(algorithms)
        self.jwks_url = jwks_url
        self._client: jwt.PyJWKClient | None = None
        self._keys: list[tuple[str | None, Any]] = []  # (kid, public key)
        if jwks_url is not None:
            if not jwks_url.startswith(("https://", "http://")):
                raise ConfigError(f"trusted issuer {issuer}: jwks_url must be an http(s) URL")
            self._client = jwt.PyJWKClient(
                jwks_url,
                cache_keys=True,
                lifespan=_JWKS_LIFESPAN_SECONDS,
                timeout=min(max(fetch_timeout, 0.1), 30.0),
            )
        elif jwks is not None:
            try:
                keyset = jwt.PyJWKSet.from_dict(jwks)
            except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
                raise ConfigError(f"trusted issuer {issuer}: the JWKS holds no usable key ({exc})") from None
            self._keys = [
                (k.key_id, k.key)
                for k in keyset.keys
                if k.public_key_use in ("sig", None) and _is_public_signing_key(k.key)
            ]
            if not self._keys:
                raise ConfigError(f"trusted issuer {issuer}: the JWKS holds no asymmetric public signing key")
        else:
            try:
                key = load_pem_public_key(str(public_key_pem).encode())
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"trusted issuer {issuer}: public_key_pem is not a PEM public key") from exc
            if not _is_public_signing_key(key):
                raise ConfigError(f"trusted issuer {issuer}: public_key_pem is not an RSA, EC or EdDSA key")
            self._keys = [(None, key)]

    @property
    def remote(self) -> bool:
        """True when keys come from a JWKS URL (verification may block on the network)."""
        return self._client is not None

    def candidate_keys(self, kid: str | None, alg: str) -> list[Any]:
        """Public keys that may have signed a token with this `kid` and `alg`; may fetch the JWKS."""
        if self._client is not None:
            try:
                if kid is not None:
                    keys = [self._client.get_signing_key(kid).key]
                else:
                    keys = [k.key for k in self._client.get_signing_keys()]
            except jwt.PyJWKClientConnectionError:
                raise _fail("issuer.unreachable", "the token issuer's key set could not be fetched") from None
            except jwt.PyJWKClientError as exc:
                if "Unable to find a signing key" in str(exc):
                    raise _fail("token.bad_signature", "no key of the issuer matches the token") from None
                raise _fail("issuer.unreachable", "the token issuer's key set is unusable") from None
            except (jwt.PyJWTError, ValueError, TypeError, KeyError):
                raise _fail("issuer.unreachable", "the token issuer's key set is unusable") from None
        else:
            keys = [key for key_id, key in self._keys if kid is None or key_id is None or key_id == kid]
        return [k for k in keys if _key_fits(alg, k)]


class TokenVerifier:
    """Verifies JWT bearer tokens against trusted issuers and this server's audience."""

    def __init__(
        self, issuers: Sequence[TrustedIssuer], audience: str, *, leeway: int = 30, role_claim: str = ROLE_CLAIM
    ) -> None:
        if not audience:
            raise ConfigError("token verifier: audience (this server's resource URL) must be set")
        if not 0 <= leeway <= 300:
            raise ConfigError("token verifier: leeway must be between 0 and 300 seconds")
        self._issuers = {i.issuer: i for i in issuers}
        if len(self._issuers) != len(issuers):
            raise ConfigError("token verifier: an issuer is configured twice")
        self.audience = audience
        self.leeway = leeway
        self.role_claim = role_claim

    @property
    def may_block(self) -> bool:
        """True when some issuer uses a JWKS URL, so `verify` may do network I/O."""
        return any(i.remote for i in self._issuers.values())

    def verify(self, token: str) -> Principal:
        """Verify `token` and return its Principal; raise AuthenticationError with a distinct reason."""
        if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_LENGTH or token.count(".") != 2:
            raise _fail("token.malformed", "the bearer token is not a compact JWS")
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, TypeError):
            raise _fail("token.malformed", "the bearer token header cannot be decoded") from None
        alg = header.get("alg")
        if not isinstance(alg, str):
            raise _fail("token.malformed", "the bearer token header has no algorithm")
        # RFC 8725 §3.1: refuse none and symmetric algorithms before looking at any key.
        if alg not in ASYMMETRIC_ALGORITHMS:
            raise _fail("token.alg_not_allowed", "the token's signing algorithm is not allowed")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _fail("token.malformed", "the token's key id is not a string")
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except (jwt.PyJWTError, ValueError, TypeError):
            raise _fail("token.malformed", "the bearer token payload cannot be decoded") from None
        iss = unverified.get("iss")
        if iss is None:
            raise _fail("token.missing_claim", "the token lacks the required claim 'iss'")
        issuer = self._issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise _fail("token.unknown_issuer", "the token's issuer is not trusted by this server")
        if alg not in issuer.algorithms:
            raise _fail("token.alg_not_allowed", "the token's signing algorithm is not allowed for its issuer")
        keys = issuer.candidate_keys(kid, alg)
        if not keys:
            raise _fail("token.bad_signature", "no key of the issuer matches the token")
        claims = self._decode(token, keys, alg, issuer.issuer)
        return principal_from_claims(claims, role_claim=self.role_claim)

    def _decode(self, token: str, keys: list[Any], alg: str, iss: str) -> dict[str, Any]:
        last: AuthenticationError | None = None
        for key in keys:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key,
                    algorithms=[alg],
                    audience=self.audience,
                    issuer=iss,
                    leeway=self.leeway,
                    options={"require": _REQUIRED_CLAIMS},
                )
                return claims
            except jwt.InvalidSignatureError:
                last = _fail("token.bad_signature", "the token's signature does not verify")
            except jwt.ExpiredSignatureError:
                raise _fail("token.expired", "the token has expired") from None
            except jwt.ImmatureSignatureError:
                raise _fail("token.not_yet_valid", "the token is not valid yet") from None
            except jwt.InvalidAudienceError:
                raise _fail("token.wrong_audience", "the token was not issued for this server") from None
            except jwt.MissingRequiredClaimError as exc:
                raise _fail("token.missing_claim", f"the token lacks the required claim {exc.claim!r}") from None
            except jwt.InvalidIssuerError:
                raise _fail("token.unknown_issuer", "the token's issuer is not trusted by this server") from None
            except jwt.InvalidAlgorithmError:
                raise _fail("token.alg_not_allowed", "the token's signing algorithm is not allowed") from None
            except (jwt.PyJWTError, ValueError, TypeError, KeyError):
                raise _fail("token.malformed", "the token's claims are malformed") from None
        assert last is not None
        raise last


class PrincipalAccessToken(AccessToken):
    """The MCP SDK's AccessToken carrying the verified Principal (not serialized, not in repr)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    principal: SkipValidation[Principal] = Field(exclude=True, repr=False)


class McpTokenVerifier:
    """Satisfies the MCP SDK `TokenVerifier` protocol (`async verify_token(token) -> AccessToken | None`).

    `on_failure(reason)` is called with the AuthenticationError reason when a token is refused, for
    audit and metrics; the SDK itself only sees None and answers 401.
    """

    def __init__(self, verifier: TokenVerifier, *, on_failure: Callable[[str], None] | None = None) -> None:
        self.verifier = verifier
        self.on_failure = on_failure

    async def verify_token(self, token: str) -> AccessToken | None:
        """Verify a bearer token for the SDK's BearerAuthBackend; None means 401."""
        try:
            if self.verifier.may_block:
                principal = await anyio.to_thread.run_sync(self.verifier.verify, token)
            else:
                principal = self.verifier.verify(token)
        except AuthenticationError as exc:
            log.info("bearer token refused: %s", exc.reason)
            if self.on_failure is not None:
                self.on_failure(exc.reason)
            return None
        return to_access_token(principal, token, self.verifier.audience)


def to_access_token(principal: Principal, token: str, audience: str) -> PrincipalAccessToken:
    """Wrap a Principal as the SDK's AccessToken; `resource` is this server's audience (RFC 8707)."""
    return PrincipalAccessToken(
        token=token,
        client_id=principal.client_id or "",
        scopes=list(principal.scopes.tokens),
        expires_at=int(principal.expires_at) if principal.expires_at is not None else None,
        resource=audience,
        subject=principal.sub,
        claims={"iss": principal.issuer},
        principal=principal,
    )


def principal_from_access_token(token: AccessToken | None) -> Principal | None:
    """The Principal inside an AccessToken produced by McpTokenVerifier, else None."""
    return token.principal if isinstance(token, PrincipalAccessToken) else None


def current_principal() -> Principal | None:
    """The Principal of the HTTP request being handled (from the SDK's auth contextvar), or None."""
    return principal_from_access_token(get_access_token())
