"""Break-glass grants: who opened emergency access and until when, in process or shared by workers through Redis.

A grant is keyed by the principal's subject key and holds only its expiry (epoch seconds): no reason,
role or PHI. `MemoryGrants` keeps them in this process (one server); `RedisGrants` keeps one Redis key
per subject (`prefix` + SHA-256 of the subject key, as the rate limiter names its buckets) whose value
is the expiry and which Redis deletes by itself at that instant (`SET ... PXAT`), so a grant made
through one worker is honoured by every other and lapses everywhere at once.

Failure policy (fail closed): when Redis cannot be reached, `grant` raises StoreError, so a grant is
never silently kept in one process only, and `active` answers False, so an outage never opens access.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

import redis

from fhirgate.errors import ConfigError, InvalidInput, StoreError
from fhirgate.ratelimit.redis_store import DEFAULT_TIMEOUT_S, redact_url

DEFAULT_PREFIX = "fhirgate:glass:"
_log = logging.getLogger(__name__)
_MAX_SUBJECT = 1000


class GrantStore(Protocol):
    """Where break-glass grants live: MemoryGrants (one process) or RedisGrants (shared by workers)."""

    def grant(self, subject_key: str, until: float) -> None:
        """Record that `subject_key` has break-glass until `until` (epoch seconds), replacing any earlier grant."""
        ...

    def active(self, subject_key: str) -> bool:
        """Whether `subject_key` holds a grant that has not expired (False when it cannot be known)."""
        ...

    def close(self) -> None:
        """Release the store's resources."""
        ...


def _wall_clock() -> float:
    """Epoch seconds, looked up at each call (so tests that move `time.time` move grants too)."""
    return time.time()


def check_subject(subject_key: object) -> str:
    """The subject key, or InvalidInput when it is empty or absurdly long."""
    if not isinstance(subject_key, str) or not subject_key or len(subject_key) > _MAX_SUBJECT:
        raise InvalidInput("subject_key", "must be a non-empty string", f"at most {_MAX_SUBJECT} characters")
    return subject_key


def check_until(until: object) -> float:
    """The expiry as epoch seconds, or InvalidInput when it is not a finite number."""
    if isinstance(until, bool) or not isinstance(until, int | float) or not math.isfinite(until):
        raise InvalidInput("until", "must be a finite epoch time in seconds")
    return float(until)


class MemoryGrants:
    """Grants held in this process under a lock (lost on restart, not seen by other workers)."""

    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock or _wall_clock
        self._lock = threading.Lock()
        self._grants: dict[str, float] = {}

    def grant(self, subject_key: str, until: float) -> None:
        """Record the grant; expired grants are swept out on the way."""
        subject_key, until = check_subject(subject_key), check_until(until)
        with self._lock:
            now = self._clock()
            for key in [k for k, v in self._grants.items() if v <= now]:
                del self._grants[key]
            if until > now:
                self._grants[subject_key] = until
            else:
                self._grants.pop(subject_key, None)

    def active(self, subject_key: str) -> bool:
        """Whether the subject's grant is still running."""
        with self._lock:
            until = self._grants.get(subject_key)
        return until is not None and until > self._clock()

    def close(self) -> None:
        """Forget every grant."""
        with self._lock:
            self._grants.clear()


class RedisGrants:
    """Grants shared by every worker through one Redis server; each key expires with its grant."""

    def __init__(
        self,
        url: str,
        prefix: str = DEFAULT_PREFIX,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not isinstance(url, str) or not url:
            raise ConfigError("redis url is empty")
        if not isinstance(prefix, str) or not prefix or len(prefix) > 200:
            raise InvalidInput("prefix", "must be a non-empty string", "at most 200 characters")
        self.prefix = prefix
        self.where = redact_url(url)
        self._clock = clock or _wall_clock
        try:
            self._client: redis.Redis = redis.Redis.from_url(
                url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
            )
        except (ValueError, TypeError):
            raise ConfigError(f"redis url is invalid ({self.where})") from None

    def redis_key(self, subject_key: str) -> str:
        """The Redis key of a subject's grant: the prefix plus a SHA-256 digest of the subject key."""
        return self.prefix + hashlib.sha256(check_subject(subject_key).encode()).hexdigest()[:40]

    def grant(self, subject_key: str, until: float) -> None:
        """Store the grant with Redis expiring it at `until`; StoreError when Redis fails (no grant is made)."""
        key, until = self.redis_key(subject_key), check_until(until)
        try:
            if until <= self._clock():
                self._client.delete(key)
                return
            self._client.set(key, repr(until), pxat=math.ceil(until * 1000))
        except redis.RedisError as exc:
            raise StoreError(
                f"break-glass grant store failed: {type(exc).__name__} at {self.where}; no grant was made"
            ) from None

    def active(self, subject_key: str) -> bool:
        """Whether Redis holds an unexpired grant for the subject; False when Redis fails (fail closed)."""
        key = self.redis_key(subject_key)
        try:
            raw = self._client.get(key)
        except redis.RedisError as exc:
            _log.warning(
                "break-glass grant store unreachable (%s at %s): treated as no grant", type(exc).__name__, self.where
            )
            return False
        if raw is None:
            return False
        try:
            until = float(raw)
        except (TypeError, ValueError):
            return False
        return until > self._clock()

    def close(self) -> None:
        """Close the connection pool."""
        with contextlib.suppress(redis.RedisError):
            self._client.close()


def open_grants(redis_url: str | None) -> GrantStore:
    """The configured grant store: shared Redis grants when a URL is given, else in-process ones."""
    if redis_url is None or not redis_url.strip():
        return MemoryGrants()
    return RedisGrants(redis_url.strip())
