"""Token-bucket arithmetic, pure (no clock, no I/O): refill, take, and the exact retry-after.

A bucket holds up to `capacity` tokens and gains `refill_per_second` tokens per second; a request of
cost `c` is allowed when the bucket holds at least `c` tokens, and then takes them. A refused request
takes nothing. `retry_after_s` is the time until enough tokens will be there, rounded UP to 0.1 s, so
a caller who waits that long is allowed (unless someone else spent the tokens meanwhile). A cost larger
than the capacity can never be met: it is refused with `REASON_TOO_COSTLY` and an infinite retry-after.
The stores (memory.py, redis_store.py) apply these same rules; the Redis Lua script mirrors `available`
and `EPSILON`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from fhirgate.errors import InvalidInput

# Tolerance in tokens for float noise: a bucket within EPSILON of the cost counts as holding it.
EPSILON = 1e-6
# Retry-after granularity in seconds (rounded up to a multiple of this).
RETRY_STEP = 0.1
MAX_KEY_CHARS = 1024
REASON_EMPTY = "not enough tokens"
REASON_TOO_COSTLY = "cost exceeds bucket capacity (can never be allowed)"


def _positive_finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise InvalidInput(name, "must be a positive finite number")
    return float(value)


@dataclass(frozen=True, slots=True)
class BucketRule:
    """A bucket's size and refill rate; `ttl_seconds` is how long an idle bucket takes to become full again."""

    capacity: float
    refill_per_second: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "capacity", _positive_finite("capacity", self.capacity))
        object.__setattr__(self, "refill_per_second", _positive_finite("refill_per_second", self.refill_per_second))

    @classmethod
    def per_minute(cls, requests: float, *, burst: float | None = None) -> BucketRule:
        """A rule allowing `requests` cost units per minute on average, with bursts up to `burst` (default: same)."""
        rate = _positive_finite("requests", requests)
        return cls(capacity=burst if burst is not None else rate, refill_per_second=rate / 60.0)

    @property
    def ttl_seconds(self) -> float:
        """Time for an empty bucket to refill completely; after that, a stored bucket equals a missing one."""
        return self.capacity / self.refill_per_second


@dataclass(frozen=True, slots=True)
class BucketState:
    """Tokens held at time `updated` (seconds on the store's clock)."""

    tokens: float
    updated: float


@dataclass(frozen=True, slots=True)
class RateVerdict:
    """The outcome of one take: allowed or not, tokens left, and how long to wait before retrying."""

    allowed: bool
    remaining: float
    retry_after_s: float
    reason: str | None = None

    @property
    def retryable(self) -> bool:
        """False when waiting will never help (the cost exceeds the bucket's capacity)."""
        return math.isfinite(self.retry_after_s)


@dataclass(frozen=True, slots=True)
class BucketRequest:
    """One bucket to take from in an all-or-nothing multi-take."""

    key: str
    cost: int
    rule: BucketRule

    def __post_init__(self) -> None:
        check_key(self.key)
        check_cost(self.cost)


def check_key(key: object) -> str:
    """A bucket key: a non-empty string of at most MAX_KEY_CHARS characters."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS:
        raise InvalidInput("key", "must be a non-empty string", f"at most {MAX_KEY_CHARS} characters")
    return key


def check_cost(cost: object) -> int:
    """A cost: a whole number of tokens, zero or more."""
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 0:
        raise InvalidInput("cost", "must be a whole number of tokens", "0 or more")
    return cost


def check_unique(requests: Sequence[BucketRequest]) -> None:
    """Refuse a multi-take naming one bucket twice (its two takes would not add up atomically)."""
    keys = [r.key for r in requests]
    if len(set(keys)) != len(keys):
        raise InvalidInput("requests", "the same bucket key appears twice", "distinct keys")


def available(state: BucketState | None, now: float, rule: BucketRule) -> float:
    """Tokens in the bucket at `now`: a missing bucket is full; a clock that went backwards adds nothing."""
    if state is None:
        return rule.capacity
    elapsed = max(0.0, now - state.updated)
    return min(rule.capacity, state.tokens + elapsed * rule.refill_per_second)


def retry_after(tokens: float, cost: int, rule: BucketRule) -> float:
    """Seconds until `tokens` grows to `cost`, rounded up to RETRY_STEP; 0 when already enough, inf if never."""
    if cost > rule.capacity + EPSILON:
        return math.inf
    deficit = cost - tokens
    if deficit <= EPSILON:
        return 0.0
    steps = math.ceil(deficit / rule.refill_per_second / RETRY_STEP - 1e-9)
    return round(max(1, steps) * RETRY_STEP, 1)


def _floor3(value: float) -> float:
    return math.floor(max(0.0, value) * 1000 + 1e-9) / 1000


def verdict(tokens: float, cost: int, rule: BucketRule, *, allowed: bool | None = None) -> RateVerdict:
    """The verdict for a bucket holding `tokens`; `allowed` overrides when another bucket decided a multi-take."""
    if cost > rule.capacity + EPSILON:
        return RateVerdict(False, _floor3(tokens), math.inf, REASON_TOO_COSTLY)
    enough = tokens + EPSILON >= cost
    ok = enough if allowed is None else allowed
    if ok:
        return RateVerdict(True, _floor3(tokens - cost), 0.0, None)
    wait = retry_after(tokens, cost, rule)
    return RateVerdict(False, _floor3(tokens), wait, REASON_EMPTY if wait > 0 else None)


def take(state: BucketState | None, now: float, cost: int, rule: BucketRule) -> tuple[RateVerdict, BucketState | None]:
    """Take `cost` tokens at `now`: (verdict, new state); on refusal the state is returned unchanged."""
    tokens = available(state, now, rule)
    result = verdict(tokens, check_cost(cost), rule)
    if not result.allowed:
        return result, state
    return result, BucketState(max(0.0, tokens - cost), now)


def take_all(
    states: Sequence[BucketState | None], now: float, requests: Sequence[BucketRequest]
) -> tuple[list[RateVerdict], list[BucketState | None]]:
    """Take from every bucket or from none: allowed only when each holds its cost; verdicts in request order."""
    if len(states) != len(requests):
        raise InvalidInput("states", "must match requests one to one")
    tokens = [available(s, now, r.rule) for s, r in zip(states, requests, strict=True)]
    ok = all(verdict(t, r.cost, r.rule).allowed for t, r in zip(tokens, requests, strict=True))
    verdicts = [verdict(t, r.cost, r.rule, allowed=ok) for t, r in zip(tokens, requests, strict=True)]
    if not ok:
        return verdicts, list(states)
    return verdicts, [BucketState(max(0.0, t - r.cost), now) for t, r in zip(tokens, requests, strict=True)]
