"""Opaque paging cursors: encrypted, authenticated, expiring, and bound to the principal they were issued to.

A cursor carries search state (query parameters, offset, tool) that may hold PHI such as a searched name, and
it comes back from the client, so it must be neither readable nor forgeable (the MCP spec asks the same of
`requestState`). Layout, then base64url without padding:

    version (1) | issued-at (u32 s) | expires (u32 s) | nonce (12) | AES-256-GCM(state) (n + 16) |
    principal tag (8) | HMAC-SHA256 (16)

- AES-GCM encrypts the orjson state with AAD = header + principal_key, so a cursor decrypts only for its
  principal. Keys come from the secret through HKDF-SHA256 (separate encryption and MAC keys).
- The trailing HMAC covers every byte before it; the principal tag is an HMAC over the header and the
  principal_key. They let `decode` tell apart "altered or not ours" from "issued to someone else" before
  touching the ciphertext. Messages never include any part of the state.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import struct
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fhirgate.errors import ConfigError, InvalidInput

VERSION = 1
_HEADER = struct.Struct(">BII")  # version, issued-at, expires
_NONCE = 12
_GCM_TAG = 16
_PTAG = 8
_MAC = 16
_MIN_RAW = _HEADER.size + _NONCE + _GCM_TAG + _PTAG + _MAC
MAX_STATE_BYTES = 2048
MAX_TOKEN_CHARS = 4 * (MAX_STATE_BYTES + _MIN_RAW) // 3 + 4
MAX_TTL_SECONDS = 7 * 24 * 3600
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]+$")

_ALLOWED = "a cursor returned by a previous call of the same caller"
MSG_MALFORMED = "is not a valid cursor"
MSG_TAMPERED = "failed its integrity check (altered, or not issued by this server)"
MSG_WRONG_PRINCIPAL = "was issued to a different caller"
MSG_EXPIRED = "has expired; repeat the search to get a new one"


class CursorCodec:
    """Encodes and decodes paging cursors under one server secret (at least 32 bytes)."""

    def __init__(self, secret: bytes, *, clock: Callable[[], float] = time.time) -> None:
        if not isinstance(secret, bytes) or len(secret) < 32:
            raise ConfigError("cursor secret must be at least 32 random bytes")
        keys = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=b"fhirgate cursor v1").derive(secret)
        self._aead = AESGCM(keys[:32])
        self._mac_key = keys[32:]
        self._clock = clock

    def _principal_tag(self, header: bytes, principal_key: str) -> bytes:
        message = b"principal\x00" + header + principal_key.encode("utf-8")
        return hmac.new(self._mac_key, message, hashlib.sha256).digest()[:_PTAG]

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._mac_key, b"cursor\x00" + body, hashlib.sha256).digest()[:_MAC]

    def encode(self, principal_key: str, state: Mapping[str, Any], *, ttl_seconds: int = 3600) -> str:
        """Return an opaque URL-safe cursor for `state`, valid for `ttl_seconds` and only for `principal_key`."""
        _check_principal(principal_key)
        if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or not 0 < ttl_seconds <= MAX_TTL_SECONDS:
            raise InvalidInput("ttl_seconds", "out of range", f"1 to {MAX_TTL_SECONDS}")
        try:
            plain = orjson.dumps(dict(state))
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise InvalidInput("cursor", "search state is not JSON-serialisable") from exc
        if len(plain) > MAX_STATE_BYTES:
            raise InvalidInput("cursor", "search state is too large to page", f"{MAX_STATE_BYTES} bytes")
        now = int(self._clock())
        header = _HEADER.pack(VERSION, now, now + ttl_seconds)
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, plain, header + principal_key.encode("utf-8"))
        body = header + nonce + sealed + self._principal_tag(header, principal_key)
        return base64.urlsafe_b64encode(body + self._mac(body)).rstrip(b"=").decode("ascii")

    def decode(self, token: str, principal_key: str) -> dict[str, Any]:
        """Return the state in `token`, or raise InvalidInput('cursor', ...) naming what is wrong with it."""
        _check_principal(principal_key)
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS or not _TOKEN_RE.match(token):
            raise InvalidInput("cursor", MSG_MALFORMED, _ALLOWED)
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput("cursor", MSG_MALFORMED, _ALLOWED) from exc
        if len(raw) < _MIN_RAW or raw[0] != VERSION:
            raise InvalidInput("cursor", MSG_MALFORMED, _ALLOWED)
        body, mac = raw[:-_MAC], raw[-_MAC:]
        if not hmac.compare_digest(mac, self._mac(body)):
            raise InvalidInput("cursor", MSG_TAMPERED, _ALLOWED)
        header = body[: _HEADER.size]
        if not hmac.compare_digest(body[-_PTAG:], self._principal_tag(header, principal_key)):
            raise InvalidInput("cursor", MSG_WRONG_PRINCIPAL, _ALLOWED)
        _, _issued, expires = _HEADER.unpack(header)
        if self._clock() >= expires:
            raise InvalidInput("cursor", MSG_EXPIRED, _ALLOWED)
        nonce = body[_HEADER.size : _HEADER.size + _NONCE]
        sealed = body[_HEADER.size + _NONCE : -_PTAG]
        try:
            plain = self._aead.decrypt(nonce, sealed, header + principal_key.encode("utf-8"))
            state = orjson.loads(plain)
        except (InvalidTag, orjson.JSONDecodeError) as exc:
            raise InvalidInput("cursor", MSG_TAMPERED, _ALLOWED) from exc
        if not isinstance(state, dict):
            raise InvalidInput("cursor", MSG_MALFORMED, _ALLOWED)
        return state


def _check_principal(principal_key: str) -> None:
    if not isinstance(principal_key, str) or not principal_key:
        raise InvalidInput("principal", "a non-empty principal key is required")
