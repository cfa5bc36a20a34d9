"""The Redis store: one bucket shared by two workers, atomic multi-takes, TTLs, server time, failures."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from fhirgate.errors import ConfigError, StoreError
from fhirgate.ratelimit import BucketRequest, BucketRule, RateLimitRule, check, open_limiter
from fhirgate.ratelimit.bucket import REASON_TOO_COSTLY
from fhirgate.ratelimit.redis_store import RedisRateLimiter, redact_url, ttl_ms


def test_two_workers_share_one_bucket(redis_url: str, prefix: str) -> None:
    a, b = RedisRateLimiter(redis_url, prefix), RedisRateLimiter(redis_url, prefix)
    try:
        assert a.take("p:iss#alice", 6, 10, 0.001).allowed
        seen = b.take("p:iss#alice", 5, 10, 0.001)
        assert not seen.allowed and seen.remaining == pytest.approx(4, abs=0.01)
        assert seen.retry_after_s == pytest.approx(1000, abs=0.2)
        assert b.take("p:iss#alice", 4, 10, 0.001).allowed
        assert not a.take("p:iss#alice", 1, 10, 0.001).allowed
    finally:
        a.close()
        b.close()


def test_refusal_spends_nothing_and_multi_take_is_all_or_nothing(
    redis_url: str, prefix: str, redis_client: redis.Redis
) -> None:
    limiter = RedisRateLimiter(redis_url, prefix)
    rule = RateLimitRule(principal=BucketRule(100, 0.001), client=BucketRule(3, 0.001))
    assert check(limiter, "iss#alice", "app", "search", 3, rule).allowed
    refused = check(limiter, "iss#alice", "app", "search", 2, rule)
    assert not refused.allowed and refused.limited_by == ("client",)
    stored = redis_client.hget(limiter.redis_key("p:iss#alice"), "tokens")
    assert stored is not None and float(stored) == pytest.approx(97, abs=0.01)
    # A cost above capacity is refused and creates no bucket at all.
    verdict = limiter.take("fresh", 11, 10, 1)
    assert verdict.reason == REASON_TOO_COSTLY and not verdict.retryable
    assert not redis_client.exists(limiter.redis_key("fresh"))
    limiter.close()


def test_buckets_expire_after_their_refill_time(redis_url: str, prefix: str, redis_client: redis.Redis) -> None:
    limiter = RedisRateLimiter(redis_url, prefix)
    rule = BucketRule(10, 2)
    limiter.take("k", 1, rule.capacity, rule.refill_per_second)
    key = limiter.redis_key("k")
    pttl = redis_client.pttl(key)
    assert 0 < pttl <= ttl_ms(rule) == 6000
    assert key.startswith(prefix)
    assert len(key) == len(prefix) + 40 and all(c in "0123456789abcdef" for c in key[len(prefix) :])
    limiter.close()


def test_keys_hold_no_subject_in_clear(redis_url: str, prefix: str, redis_client: redis.Redis) -> None:
    limiter = RedisRateLimiter(redis_url, prefix)
    rule = RateLimitRule(BucketRule(5, 1), BucketRule(5, 1))
    check(limiter, "https://issuer#jane.doe@example.org", "app-secret-name", "read", 1, rule)
    keys = [k.decode() for k in redis_client.scan_iter(match=prefix + "*")]
    assert len(keys) == 2
    assert not any("jane" in k or "app-secret" in k for k in keys)
    limiter.close()


def test_refill_uses_redis_time_not_the_worker_clock(
    redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    limiter = RedisRateLimiter(redis_url, prefix)
    assert limiter.take("k", 10, 10, 20).allowed
    # A worker whose clock is wildly off changes nothing: the script reads TIME on the server.
    monkeypatch.setattr(time, "time", lambda: 4_000_000_000.0)
    monkeypatch.setattr(time, "monotonic", lambda: -5.0)
    assert not limiter.take("k", 10, 10, 20).allowed
    monkeypatch.undo()
    time.sleep(0.25)  # about 5 tokens come back
    assert limiter.take("k", 3, 10, 20).allowed
    assert not limiter.take("k", 8, 10, 20).allowed
    limiter.close()


def test_threads_on_two_workers_never_overspend(redis_url: str, prefix: str) -> None:
    workers = [RedisRateLimiter(redis_url, prefix) for _ in range(2)]
    barrier = threading.Barrier(8)

    def run(n: int) -> int:
        barrier.wait()
        limiter = workers[n % 2]
        return sum(limiter.take("shared", 1, 60, 1e-6).allowed for _ in range(20))

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(run, range(8))) == 60
    for w in workers:
        w.close()


def test_redis_down_is_a_store_error_without_the_password() -> None:
    with pytest.raises(StoreError) as err:
        RedisRateLimiter("redis://admin:s3cret-pw@127.0.0.1:1/0?password=other-secret", timeout_s=0.5)
    message = err.value.message
    assert "s3cret" not in message and "other-secret" not in message and "admin" not in message
    assert "127.0.0.1:1" in message


def test_redis_lost_after_start_is_a_store_error(redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    limiter = RedisRateLimiter(redis_url, prefix)

    def broken(**_: object) -> object:
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(limiter, "_script", broken)
    with pytest.raises(StoreError, match="ConnectionError"):
        limiter.take("k", 1, 5, 1)
    with pytest.raises(StoreError):
        limiter.take_all([BucketRequest("a", 1, BucketRule(5, 1)), BucketRequest("b", 1, BucketRule(5, 1))])
    limiter.close()


def test_invalid_url_is_a_config_error_without_the_password() -> None:
    with pytest.raises(ConfigError) as err:
        RedisRateLimiter("memcached://user:hunter2@host:11211")
    assert "hunter2" not in err.value.message


def test_redact_url_keeps_host_port_and_db_only() -> None:
    assert redact_url("rediss://u:p@cache.internal:6380/2?ssl_cert_reqs=none") == "rediss://cache.internal:6380/2"
    assert redact_url("unix:///run/redis.sock?password=x") == "unix:///run/redis.sock"


def test_open_limiter_with_url_is_shared(redis_url: str) -> None:
    limiter = open_limiter(redis_url)
    assert isinstance(limiter, RedisRateLimiter)
    limiter.close()
