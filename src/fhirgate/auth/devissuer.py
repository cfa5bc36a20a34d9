"""A local development token issuer: an ES256 key pair on disk that mints SMART-style access tokens.

For development and demos only: the private key lives in `keys_dir` (PEM, mode 0600) and mints
tokens; the server needs only the public JWKS written beside it (`load_trusted_issuer`). The
issuer id is `urn:fhirgate:dev-issuer:<first 16 chars of the RFC 7638 JWK thumbprint>`, so a
new key pair is a new issuer and tokens from an old key stop verifying.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import stat
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fhirgate.auth.principal_builder import ROLE_CLAIM, normalize_fhir_user
from fhirgate.auth.tokens import TrustedIssuer
from fhirgate.core.policy.scopes import parse_scope
from fhirgate.errors import ConfigError, InvalidInput

PRIVATE_KEY_FILE = "dev-issuer-key.pem"
JWKS_FILE = "dev-issuer-jwks.json"
ISSUER_PREFIX = "urn:fhirgate:dev-issuer:"
MAX_TTL_SECONDS = 30 * 24 * 3600
_ROLE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_TTL = re.compile(r"(\d{1,9})([smhdw]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_ttl(text: str | int) -> int:
    """Parse a token lifetime: `3600`, `30s`, `30m`, `1h`, `2d`, `1w` -> seconds (positive)."""
    allowed = "a whole number of seconds, or a number followed by s, m, h, d or w (e.g. 30m, 1h, 2d)"
    if isinstance(text, bool):
        raise InvalidInput("ttl", "must be a duration", allowed)
    if isinstance(text, int):
        seconds = text
    else:
        match = _TTL.fullmatch(str(text).strip().lower())
        if match is None:
            raise InvalidInput("ttl", f"{str(text)[:32]!r} is not a duration", allowed)
        seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise InvalidInput("ttl", "must be more than zero seconds", allowed)
    return seconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _public_jwk(key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    numbers = key.public_numbers()
    jwk = {
        "crv": "P-256",
        "kty": "EC",
        "x": _b64(numbers.x.to_bytes(32, "big")),
        "y": _b64(numbers.y.to_bytes(32, "big")),
    }
    # RFC 7638 §3.2: thumbprint over the required members in lexicographic order, no whitespace.
    canonical = json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode()
    thumbprint = _b64(hashlib.sha256(canonical).digest())
    return {**jwk, "kid": thumbprint, "use": "sig", "alg": "ES256"}


def _write_private(path: Path, pem: bytes) -> None:
    """Create the key file atomically with mode 0600; never overwrite an existing one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)  # fails if another process created the key first
    finally:
        tmp.unlink(missing_ok=True)


def new_private_pem() -> bytes:
    """A fresh EC P-256 private key as unencrypted PKCS#8 PEM (the dev issuer's key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _parse_private(pem: bytes, where: str) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: not a PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ConfigError(f"{where}: the dev issuer key must be an EC P-256 key")
    return key


def _load_private(path: Path) -> ec.EllipticCurvePrivateKey:
    if os.name == "posix" and stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise ConfigError(f"{path}: the dev issuer private key must not be readable by others (chmod 600)")
    return _parse_private(path.read_bytes(), str(path))


def _trusted_from_jwks(jwks: dict[str, Any]) -> TrustedIssuer:
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or len(keys) != 1 or not isinstance(keys[0], dict):
        raise ConfigError("dev issuer JWKS must hold exactly one key")
    kid = keys[0].get("kid")
    if not isinstance(kid, str) or len(kid) < 16:
        raise ConfigError("dev issuer JWKS key lacks its thumbprint kid")
    return TrustedIssuer(ISSUER_PREFIX + kid[:16], jwks=jwks, algorithms=("ES256",))


def load_trusted_issuer(keys_dir: Path) -> TrustedIssuer:
    """The dev issuer as a TrustedIssuer from the public JWKS only (what the server needs)."""
    path = Path(keys_dir) / JWKS_FILE
    try:
        jwks = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no dev issuer here; create one with the dev token command") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable dev issuer JWKS") from exc
    return _trusted_from_jwks(jwks)


class DevIssuer:
    """An ES256 signing key kept in a directory, minting short SMART access tokens for local use."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        self._key = private_key
        self._jwk = _public_jwk(private_key.public_key())
        self.issuer = ISSUER_PREFIX + self._jwk["kid"][:16]

    @classmethod
    def load_or_create(cls, keys_dir: Path) -> DevIssuer:
        """Load the key pair from `keys_dir`, creating it (dir 0700, key 0600) on first use."""
        keys_dir = Path(keys_dir)
        try:
            keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = keys_dir / PRIVATE_KEY_FILE
            if not path.exists():
                # Losing a creation race is fine: load the winner's key below.
                with contextlib.suppress(FileExistsError):
                    _write_private(path, new_private_pem())
            issuer = cls(_load_private(path))
            jwks_path = keys_dir / JWKS_FILE
            text = json.dumps(issuer.jwks(), indent=2) + "\n"
            if not jwks_path.exists() or jwks_path.read_text(encoding="utf-8") != text:
                tmp = jwks_path.with_name(f".{JWKS_FILE}.{uuid.uuid4().hex}.tmp")
                tmp.write_text(text, encoding="utf-8")
                os.replace(tmp, jwks_path)
        except OSError as exc:
            raise ConfigError(f"{keys_dir}: cannot create or read the dev issuer keys ({exc.strerror})") from exc
        return issuer

    @classmethod
    def from_pem(cls, pem: bytes, where: str) -> DevIssuer:
        """The issuer of a private key kept elsewhere than keys/ (a database); errors name `where`."""
        return cls(_parse_private(pem, where))

    @property
    def kid(self) -> str:
        return self._jwk["kid"]

    def jwks(self) -> dict[str, Any]:
        """The public key set (RFC 7517) to verify this issuer's tokens."""
        return {"keys": [dict(self._jwk)]}

    def trusted_issuer(self) -> TrustedIssuer:
        """This issuer as a TrustedIssuer for a TokenVerifier."""
        return _trusted_from_jwks(self.jwks())

    def mint(
        self,
        *,
        scope: str,
        audience: str,
        subject: str = "dev-user",
        patient: str | None = None,
        fhir_user: str | None = None,
        client_id: str = "fhirgate-dev",
        ttl_seconds: int = 3600,
        purpose_of_use: Sequence[str] = (),
        role: str | None = None,
        role_claim: str = ROLE_CLAIM,
    ) -> str:
        """Sign an access token (RFC 9068 shape with SMART claims); validates every input first."""
        if not isinstance(scope, str):
            raise InvalidInput("scope", "must be a space-separated string of scopes")
        for item in scope.split():
            parse_scope(item)  # raises InvalidInput naming the malformed scope
        if not isinstance(audience, str) or not audience or any(c.isspace() for c in audience):
            raise InvalidInput("audience", "must be this server's resource URL", "e.g. http://127.0.0.1:8765/mcp")
        if not isinstance(subject, str) or not subject:
            raise InvalidInput("subject", "must be a non-empty string")
        if not isinstance(client_id, str) or not client_id:
            raise InvalidInput("client_id", "must be a non-empty string")
        ttl = parse_ttl(ttl_seconds)
        if ttl > MAX_TTL_SECONDS:
            raise InvalidInput("ttl", f"{ttl} seconds is longer than the 30-day maximum for dev tokens")
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": audience,
            "iat": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
            "client_id": client_id,
            "scope": " ".join(scope.split()),
        }
        if patient is not None:
            if not isinstance(patient, str) or not _ID.fullmatch(patient.removeprefix("Patient/")):
                raise InvalidInput("patient", "must be a FHIR id", "letters, digits, '-' and '.', 1-64 characters")
            claims["patient"] = patient.removeprefix("Patient/")
        if fhir_user is not None:
            normalized = normalize_fhir_user(fhir_user) if isinstance(fhir_user, str) else None
            if normalized is None:
                raise InvalidInput(
                    "fhir_user",
                    "must be a reference such as Practitioner/123",
                    "Patient, Practitioner, PractitionerRole, RelatedPerson or Person",
                )
            claims["fhirUser"] = normalized
        purposes = [purpose_of_use] if isinstance(purpose_of_use, str) else list(purpose_of_use)
        if purposes:
            if not all(isinstance(p, str) and p and not any(c.isspace() for c in p) for p in purposes):
                raise InvalidInput("purpose_of_use", "must be codes without spaces", "e.g. TREAT")
            claims["purpose_of_use"] = purposes
        if role is not None:
            if not isinstance(role, str) or not _ROLE.fullmatch(role):
                raise InvalidInput("role", "must be a role name from the policy file", "e.g. clinician, front_desk")
            claims[role_claim] = role
        return jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": self.kid, "typ": "at+jwt"})
