"""The in-process rate-limit store: token buckets in a dict under one lock, for a single server process.

Every take (and every multi-take) runs under one lock, so concurrent threads never spend the same
tokens twice and a principal+client pair is taken from atomically. Buckets that have refilled
completely are equal to missing ones, so they are swept out when the table grows past `max_keys`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from fhirgate.errors import InvalidInput
from fhirgate.ratelimit import bucket
from fhirgate.ratelimit.bucket import BucketRequest, BucketRule, BucketState, RateVerdict

DEFAULT_MAX_KEYS = 100_000


class MemoryRateLimiter:
    """Thread-safe token buckets held in this process (lost on restart, not shared between workers)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise InvalidInput("max_keys", "must be a positive whole number")
        self._clock = clock
        self._max_keys = max_keys
        self._sweep_at = max_keys
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[BucketState, BucketRule]] = {}

    def take(self, key: str, cost: int, capacity: float, refill_per_second: float) -> RateVerdict:
        """Take `cost` tokens from bucket `key` (created full with this rule) or refuse and take nothing."""
        return self.take_all([BucketRequest(key, cost, BucketRule(capacity, refill_per_second))])[0]

    def take_all(self, requests: Sequence[BucketRequest]) -> list[RateVerdict]:
        """Take from every bucket or none, under one lock; verdicts in request order."""
        requests = list(requests)
        bucket.check_unique(requests)
        if not requests:
            return []
        with self._lock:
            now = self._clock()
            states = [self._state(r.key) for r in requests]
            verdicts, new_states = bucket.take_all(states, now, requests)
            if verdicts[0].allowed:
                for request, state in zip(requests, new_states, strict=True):
                    if state is not None:
                        self._buckets[request.key] = (state, request.rule)
                if len(self._buckets) > self._sweep_at:
                    self._sweep(now)
        return verdicts

    def _state(self, key: str) -> BucketState | None:
        held = self._buckets.get(key)
        return held[0] if held else None

    def _sweep(self, now: float) -> None:
        """Drop buckets that are full again (they equal missing ones); called with the lock held."""
        full = [
            key
            for key, (state, rule) in self._buckets.items()
            if bucket.available(state, now, rule) >= rule.capacity - bucket.EPSILON
        ]
        for key in full:
            del self._buckets[key]
        # Never sweep more often than every max_keys new buckets: keeps takes amortised O(1).
        self._sweep_at = max(self._max_keys, 2 * len(self._buckets))

    def __len__(self) -> int:
        """How many buckets are held (full ones may linger until the next sweep)."""
        with self._lock:
            return len(self._buckets)

    def close(self) -> None:
        """Forget every bucket."""
        with self._lock:
            self._buckets.clear()
