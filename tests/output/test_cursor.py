"""Paging cursors: round trip, and every way a cursor can be altered, reused, or forged must fail cleanly."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest

from fhirgate.errors import ConfigError, InvalidInput
from fhirgate.service.cursor import (
    MAX_TOKEN_CHARS,
    MSG_EXPIRED,
    MSG_MALFORMED,
    MSG_TAMPERED,
    MSG_WRONG_PRINCIPAL,
    CursorCodec,
)

SECRET = bytes(range(32))
STATE: dict[str, Any] = {"q": [["name", "Smithson"], ["birthdate", "ge1970-01-01"]], "o": 50, "t": "search"}


class Clock:
    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _raw(token: str) -> bytearray:
    return bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))


def _token(raw: bytes | bytearray) -> str:
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def _fails(codec: CursorCodec, token: Any, principal: str, message: str) -> None:
    with pytest.raises(InvalidInput) as err:
        codec.decode(token, principal)
    assert err.value.param == "cursor"
    assert err.value.problem == message
    assert "Smithson" not in str(err.value)
    assert "1970" not in str(err.value)


def test_round_trip_and_opacity() -> None:
    codec = CursorCodec(SECRET)
    token = codec.encode("user:alice", STATE)
    assert codec.decode(token, "user:alice") == STATE
    assert token.replace("-", "").replace("_", "").isalnum()
    assert len(token) < 200
    raw = bytes(_raw(token))
    assert b"Smithson" not in raw
    assert b"search" not in raw
    assert codec.encode("user:alice", STATE) != token  # fresh nonce every time
    assert CursorCodec(SECRET).decode(token, "user:alice") == STATE  # another instance, same secret


def test_empty_and_unicode_state() -> None:
    codec = CursorCodec(SECRET)
    assert codec.decode(codec.encode("p", {}), "p") == {}
    state = {"q": [["name", "Zoë O'Brien 李"]]}
    assert codec.decode(codec.encode("p", state), "p") == state


def test_every_byte_flip_is_detected() -> None:
    codec = CursorCodec(SECRET)
    token = codec.encode("user:alice", STATE)
    raw = _raw(token)
    for index in range(len(raw)):
        for bit in (0x01, 0x80):
            altered = bytearray(raw)
            altered[index] ^= bit
            expected = MSG_MALFORMED if index == 0 else MSG_TAMPERED
            _fails(codec, _token(altered), "user:alice", expected)


def test_truncated_and_extended() -> None:
    codec = CursorCodec(SECRET)
    token = codec.encode("user:alice", STATE)
    raw = _raw(token)
    for cut in (1, 5, 16, 17, 24, len(raw) - 40):
        with pytest.raises(InvalidInput) as err:
            codec.decode(_token(raw[:-cut]), "user:alice")
        assert err.value.problem in (MSG_TAMPERED, MSG_MALFORMED)
    _fails(codec, _token(raw + b"\x00"), "user:alice", MSG_TAMPERED)
    _fails(codec, token[:-1], "user:alice", MSG_TAMPERED)


def test_wrong_principal() -> None:
    codec = CursorCodec(SECRET)
    token = codec.encode("user:1", STATE)
    for other in ("user:10", "user:", "User:1", "user:1 ", "patient:1"):
        _fails(codec, token, other, MSG_WRONG_PRINCIPAL)
    assert codec.decode(token, "user:1") == STATE


def test_expired() -> None:
    clock = Clock()
    codec = CursorCodec(SECRET, clock=clock)
    token = codec.encode("p", STATE, ttl_seconds=60)
    clock.now += 59
    assert codec.decode(token, "p") == STATE
    clock.now += 1
    _fails(codec, token, "p", MSG_EXPIRED)


def test_wrong_secret() -> None:
    token = CursorCodec(SECRET).encode("p", STATE)
    _fails(CursorCodec(bytes(reversed(SECRET))), token, "p", MSG_TAMPERED)


@pytest.mark.parametrize("token", ["", "!!!!", "abc=", "a b", "é" * 40, "AAAA", "A", 12345, None, b"abc"])
def test_not_base64_or_not_a_token(token: Any) -> None:
    _fails(CursorCodec(SECRET), token, "p", MSG_MALFORMED)


def test_huge_input_rejected_fast() -> None:
    codec = CursorCodec(SECRET)
    huge = "A" * 10_000_000
    started = time.perf_counter()
    _fails(codec, huge, "p", MSG_MALFORMED)
    _fails(codec, "A" * (MAX_TOKEN_CHARS + 1), "p", MSG_MALFORMED)
    assert time.perf_counter() - started < 0.1


def test_distinct_messages() -> None:
    assert len({MSG_MALFORMED, MSG_TAMPERED, MSG_WRONG_PRINCIPAL, MSG_EXPIRED}) == 4


def test_encode_limits() -> None:
    codec = CursorCodec(SECRET)
    with pytest.raises(InvalidInput):
        codec.encode("p", {"q": "x" * 5000})
    with pytest.raises(InvalidInput):
        codec.encode("p", {"q": object()})
    for ttl in (0, -1, 10**9, True):
        with pytest.raises(InvalidInput):
            codec.encode("p", STATE, ttl_seconds=ttl)
    with pytest.raises(InvalidInput):
        codec.encode("", STATE)
    with pytest.raises(InvalidInput):
        codec.decode(codec.encode("p", STATE), "")


@pytest.mark.parametrize("secret", [b"", b"short", "x" * 40])
def test_weak_secret_refused(secret: Any) -> None:
    with pytest.raises(ConfigError):
        CursorCodec(secret)
