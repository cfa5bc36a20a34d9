"""Rate limits per principal and per client: token buckets with a per-tool cost, in process or shared via Redis.

The service calls `check` once per tool call: it takes `cost` tokens from the principal's bucket
(`p:` + Principal.subject_key) and the client's bucket (`c:` + client_id) in one all-or-nothing take,
so a refusal by either bucket spends nothing from the other. On refusal the caller raises its
rate-limit error with `RateDecision.retry_after_s` (tool error with retry-after, issue 5 item 7).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from fhirgate.errors import InvalidInput
from fhirgate.ratelimit.bucket import BucketRequest, BucketRule, RateVerdict, check_cost
from fhirgate.ratelimit.memory import MemoryRateLimiter

__all__ = [
    "BucketRequest",
    "BucketRule",
    "MemoryRateLimiter",
    "RateDecision",
    "RateLimitRule",
    "RateLimiter",
    "RateVerdict",
    "check",
    "open_limiter",
]

PRINCIPAL_PREFIX = "p:"
CLIENT_PREFIX = "c:"


class RateLimiter(Protocol):
    """A token-bucket store: MemoryRateLimiter (one process) or RedisRateLimiter (shared by workers)."""

    def take(self, key: str, cost: int, capacity: float, refill_per_second: float) -> RateVerdict:
        """Take `cost` tokens from bucket `key` or refuse and take nothing."""
        ...

    def take_all(self, requests: Sequence[BucketRequest]) -> list[RateVerdict]:
        """Take from every bucket or from none, atomically; verdicts in request order."""
        ...

    def close(self) -> None:
        """Release the store's resources."""
        ...


@dataclass(frozen=True, slots=True)
class RateLimitRule:
    """The buckets one request is charged to: the principal's, and the client's when a client is known."""

    principal: BucketRule
    client: BucketRule | None = None


@dataclass(frozen=True, slots=True)
class RateDecision:
    """Whether a tool call may run; on refusal, which bucket(s) refused and the wait before a retry can succeed."""

    allowed: bool
    tool: str
    cost: int
    retry_after_s: float
    limited_by: tuple[str, ...] = ()
    remaining: tuple[tuple[str, float], ...] = ()
    reason: str | None = None

    @property
    def retryable(self) -> bool:
        """False when no wait helps: the tool's cost exceeds a bucket's capacity."""
        return math.isfinite(self.retry_after_s)

    @property
    def message(self) -> str:
        """A PHI-free sentence for the tool error (names the tool and the limiting bucket kinds, no ids)."""
        if self.allowed:
            return f"rate limit ok for tool {self.tool}"
        who = " and ".join(self.limited_by) or "principal"
        if not self.retryable:
            return f"tool {self.tool} costs {self.cost}, more than the {who} rate limit allows at once"
        return f"rate limit exceeded ({who}) for tool {self.tool}; retry after {self.retry_after_s:.1f} s"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (retry_after_s is null when retrying cannot help)."""
        return {
            "allowed": self.allowed,
            "tool": self.tool,
            "cost": self.cost,
            "retry_after_s": self.retry_after_s if self.retryable else None,
            "limited_by": list(self.limited_by),
            "remaining": dict(self.remaining),
            "reason": self.reason,
        }


def check(
    limiter: RateLimiter,
    principal_key: str,
    client_id: str | None,
    tool: str,
    cost: int,
    rule: RateLimitRule,
) -> RateDecision:
    """Charge one tool call to the principal's and the client's buckets, all or nothing, and say if it may run."""
    if not isinstance(tool, str) or not tool:
        raise InvalidInput("tool", "must be a non-empty tool name")
    if not isinstance(principal_key, str) or not principal_key:
        raise InvalidInput("principal_key", "must be a non-empty string")
    if client_id is not None and (not isinstance(client_id, str) or not client_id):
        raise InvalidInput("client_id", "must be a non-empty string or None")
    check_cost(cost)
    kinds = ["principal"]
    requests = [BucketRequest(PRINCIPAL_PREFIX + principal_key, cost, rule.principal)]
    if client_id is not None and rule.client is not None:
        kinds.append("client")
        requests.append(BucketRequest(CLIENT_PREFIX + client_id, cost, rule.client))
    verdicts = limiter.take_all(requests)
    remaining = tuple((kind, v.remaining) for kind, v in zip(kinds, verdicts, strict=True))
    if all(v.allowed for v in verdicts):
        return RateDecision(True, tool, cost, 0.0, remaining=remaining)
    limiting = [(kind, v) for kind, v in zip(kinds, verdicts, strict=True) if v.reason is not None]
    wait = max((v.retry_after_s for _, v in limiting), default=0.1)
    reasons = sorted({v.reason for _, v in limiting if v.reason})
    return RateDecision(
        False,
        tool,
        cost,
        wait,
        limited_by=tuple(kind for kind, _ in limiting),
        remaining=remaining,
        reason="; ".join(reasons) or None,
    )


def open_limiter(redis_url: str | None) -> RateLimiter:
    """The configured store: shared Redis buckets when a URL is given, else in-process ones."""
    if redis_url is None or not redis_url.strip():
        return MemoryRateLimiter()
    from fhirgate.ratelimit.redis_store import RedisRateLimiter

    return RedisRateLimiter(redis_url.strip())
