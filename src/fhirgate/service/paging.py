"""Paging for every bounded list: the next page is an integrity-protected cursor bound to the caller.

A cursor carries the tool, a digest of the call's other arguments and the next offset, sealed by
CursorCodec (HMAC) to the principal's subject key: a cursor from another principal, for another
query, expired or tampered with is refused as InvalidInput on `cursor`, never silently honoured.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from fhirgate.core.policy.principal import Principal
from fhirgate.errors import InvalidInput
from fhirgate.service.cursor import CursorCodec

CURSOR_TTL_SECONDS = 3600
_MAX_CURSOR_LENGTH = 4096


def arguments_digest(tool: str, arguments: Mapping[str, Any]) -> str:
    """A short digest of a call's arguments (cursor excluded) that a cursor is bound to."""
    rest = {k: v for k, v in arguments.items() if k != "cursor"}
    payload = orjson.dumps({"t": tool, "a": rest}, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(payload).hexdigest()[:32]


class Pager:
    """Issues and checks cursors for one server (secret from DataDir.secret('cursor'))."""

    def __init__(self, codec: CursorCodec, *, ttl_seconds: int = CURSOR_TTL_SECONDS) -> None:
        self._codec = codec
        self._ttl = ttl_seconds

    def offset(self, principal: Principal, tool: str, arguments: Mapping[str, Any], cursor: str | None) -> int:
        """The offset a call starts at: 0 without a cursor, else the one sealed in the cursor."""
        if cursor is None:
            return 0
        if not isinstance(cursor, str) or not cursor or len(cursor) > _MAX_CURSOR_LENGTH:
            raise InvalidInput("cursor", "not a cursor issued by this server", "the next_cursor of a previous result")
        state = self._codec.decode(cursor, principal.subject_key)
        if not isinstance(state, Mapping) or state.get("t") != tool:
            raise InvalidInput("cursor", f"was not issued by {tool}", "the next_cursor of a previous result")
        if state.get("h") != arguments_digest(tool, arguments):
            raise InvalidInput(
                "cursor",
                "belongs to a call with different arguments",
                "repeat the previous call's arguments unchanged and add its next_cursor",
            )
        offset = state.get("o")
        if not isinstance(offset, int) or offset < 0:
            raise InvalidInput("cursor", "is malformed", "the next_cursor of a previous result")
        return offset

    def next_cursor(
        self, principal: Principal, tool: str, arguments: Mapping[str, Any], next_offset: int | None
    ) -> str | None:
        """A cursor for the page at `next_offset`, or None when there is no next page."""
        if next_offset is None:
            return None
        state = {"t": tool, "h": arguments_digest(tool, arguments), "o": int(next_offset)}
        return self._codec.encode(principal.subject_key, state, ttl_seconds=self._ttl)
