"""The shared rate-limit store: token buckets in Redis, so several server workers enforce one limit.

Each take (single or multi-bucket) is ONE Lua script run atomically by Redis: it reads the server
clock with `TIME` (so workers whose clocks disagree still agree on refill), refills every bucket,
and either takes from all of them or from none. Buckets are hashes {tokens, ts} that expire after
the time they take to refill completely (an expired bucket equals a full one), so idle keys vanish.
Bucket keys are `prefix` + SHA-256 of the caller's key, truncated: Redis never sees a subject or
client id in clear, and key length is bounded. Multi-bucket takes need all keys on one node, so use a
single Redis (or a cluster with hash tags in `prefix`).

Failure policy: a Redis error raises StoreError (fail closed); the message names host and port
only, never the password or query of the URL.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import redis

from fhirgate.errors import ConfigError, InvalidInput, StoreError
from fhirgate.ratelimit import bucket
from fhirgate.ratelimit.bucket import BucketRequest, BucketRule, RateVerdict

DEFAULT_PREFIX = "fhirgate:rl:"
DEFAULT_TIMEOUT_S = 2.0
# Longest bucket lifetime kept (a year): a rule that takes longer to refill is a configuration mistake.
MAX_TTL_MS = 366 * 24 * 3600 * 1000

# KEYS: bucket keys. ARGV: EPSILON, then (cost, capacity, refill_per_second, ttl in ms) per key.
# Returns {allowed (1/0), tokens available before the take, per key, as strings}.
# Mirrors bucket.available / bucket.verdict; numbers go back as strings because Redis truncates Lua numbers.
_TAKE_ALL_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local eps = tonumber(ARGV[1])
local n = #KEYS
local avail = {}
local ok = 1
for i = 1, n do
  local cost = tonumber(ARGV[i * 4 - 2])
  local cap = tonumber(ARGV[i * 4 - 1])
  local rate = tonumber(ARGV[i * 4])
  local h = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
  local tok = tonumber(h[1])
  local ts = tonumber(h[2])
  if tok == nil or ts == nil then
    tok = cap
  else
    local elapsed = now - ts
    if elapsed < 0 then elapsed = 0 end
    tok = math.min(cap, tok + elapsed * rate)
  end
  avail[i] = tok
  if cost > cap + eps or tok + eps < cost then ok = 0 end
end
local out = {ok}
for i = 1, n do
  if ok == 1 then
    local cost = tonumber(ARGV[i * 4 - 2])
    local left = avail[i] - cost
    if left < 0 then left = 0 end
    redis.call('HSET', KEYS[i], 'tokens', string.format('%.17g', left), 'ts', string.format('%.17g', now))
    redis.call('PEXPIRE', KEYS[i], ARGV[i * 4 + 1])
  end
  out[i + 1] = string.format('%.17g', avail[i])
end
return out
"""


def ttl_ms(rule: BucketRule) -> int:
    """How long an idle bucket is kept: its full-refill time plus a second, in ms (an expired bucket is full)."""
    return min(MAX_TTL_MS, math.ceil(rule.ttl_seconds * 1000) + 1000)


def redact_url(url: str) -> str:
    """The URL reduced to scheme, host, port and path: no user, password or query (which may hold one)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "redis (unparseable url)"
    return f"{parts.scheme or 'redis'}://{host}{port}{parts.path}"


class RedisRateLimiter:
    """Token buckets shared by every worker through one Redis server; atomic per take via a Lua script."""

    def __init__(self, url: str, prefix: str = DEFAULT_PREFIX, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if not isinstance(url, str) or not url:
            raise ConfigError("redis url is empty")
        if not isinstance(prefix, str) or not prefix or len(prefix) > 200:
            raise InvalidInput("prefix", "must be a non-empty string", "at most 200 characters")
        self.prefix = prefix
        self.where = redact_url(url)
        try:
            self._client: redis.Redis = redis.Redis.from_url(
                url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
            )
        except (ValueError, TypeError):
            raise ConfigError(f"redis url is invalid ({self.where})") from None
        self._script = self._client.register_script(_TAKE_ALL_LUA)
        self.ping()

    def redis_key(self, key: str) -> str:
        """The Redis key holding bucket `key`: the prefix plus a SHA-256 digest of the key (never the key itself)."""
        digest = hashlib.sha256(bucket.check_key(key).encode()).hexdigest()[:40]
        return self.prefix + digest

    def _fail(self, exc: redis.RedisError) -> StoreError:
        return StoreError(f"rate-limit store failed: {type(exc).__name__} at {self.where}")

    def ping(self) -> None:
        """Check that Redis answers; StoreError when it does not."""
        try:
            self._client.ping()
        except redis.RedisError as exc:
            raise self._fail(exc) from None

    def take(self, key: str, cost: int, capacity: float, refill_per_second: float) -> RateVerdict:
        """Take `cost` tokens from bucket `key` (created full with this rule) or refuse and take nothing."""
        return self.take_all([BucketRequest(key, cost, BucketRule(capacity, refill_per_second))])[0]

    def take_all(self, requests: Sequence[BucketRequest]) -> list[RateVerdict]:
        """Take from every bucket or none in one atomic script; verdicts in request order."""
        requests = list(requests)
        bucket.check_unique(requests)
        if not requests:
            return []
        keys = [self.redis_key(r.key) for r in requests]
        args: list[Any] = [repr(bucket.EPSILON)]
        for r in requests:
            args += [r.cost, repr(r.rule.capacity), repr(r.rule.refill_per_second), ttl_ms(r.rule)]
        try:
            reply = self._script(keys=keys, args=args)
        except redis.RedisError as exc:
            raise self._fail(exc) from None
        try:
            allowed = int(reply[0]) == 1
            tokens = [float(v) for v in reply[1:]]
        except (TypeError, ValueError, IndexError):
            raise StoreError(f"rate-limit store gave a malformed reply at {self.where}") from None
        if len(tokens) != len(requests):
            raise StoreError(f"rate-limit store gave a malformed reply at {self.where}")
        return [bucket.verdict(t, r.cost, r.rule, allowed=allowed) for t, r in zip(tokens, requests, strict=True)]

    def close(self) -> None:
        """Close the connection pool."""
        with contextlib.suppress(redis.RedisError):
            self._client.close()
