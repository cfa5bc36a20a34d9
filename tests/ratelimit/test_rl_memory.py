"""The in-process store and the principal+client `check`: threads never overspend, refusals spend nothing."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from fhirgate.errors import InvalidInput
from fhirgate.ratelimit import (
    BucketRequest,
    BucketRule,
    MemoryRateLimiter,
    RateLimitRule,
    check,
    open_limiter,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_take_refill_and_retry_after_with_a_fake_clock() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    for _ in range(5):
        assert limiter.take("k", 2, 10, 4).allowed
    refused = limiter.take("k", 3, 10, 4)
    assert not refused.allowed and refused.remaining == 0 and refused.retry_after_s == 0.8
    clock.now += 0.7
    assert not limiter.take("k", 3, 10, 4).allowed
    clock.now += 0.1
    ok = limiter.take("k", 3, 10, 4)
    assert ok.allowed and ok.remaining == pytest.approx(0.2, abs=1e-3)


def test_keys_are_independent() -> None:
    limiter = MemoryRateLimiter(clock=FakeClock())
    assert limiter.take("a", 5, 5, 1).allowed
    assert not limiter.take("a", 1, 5, 1).allowed
    assert limiter.take("b", 5, 5, 1).allowed


def test_threads_never_spend_more_than_capacity() -> None:
    limiter = MemoryRateLimiter()
    barrier = threading.Barrier(16)

    def worker() -> int:
        barrier.wait()
        return sum(limiter.take("shared", 1, 500, 1e-6).allowed for _ in range(100))

    with ThreadPoolExecutor(16) as pool:
        allowed = sum(pool.map(lambda _: worker(), range(16)))
    assert allowed == 500


def test_check_refused_by_client_leaves_principal_untouched() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    rule = RateLimitRule(principal=BucketRule(100, 1), client=BucketRule(5, 1))
    assert check(limiter, "iss#alice", "app-1", "search", 5, rule).allowed
    decision = check(limiter, "iss#alice", "app-1", "search", 5, rule)
    assert not decision.allowed
    assert decision.limited_by == ("client",)
    assert decision.retry_after_s == 5.0
    assert dict(decision.remaining) == {"principal": 95.0, "client": 0.0}
    # The refused call took nothing from the principal: 95 tokens are still there.
    assert limiter.take("p:iss#alice", 95, 100, 1).allowed


def test_check_without_client_uses_the_principal_bucket_only() -> None:
    limiter = MemoryRateLimiter(clock=FakeClock())
    rule = RateLimitRule(principal=BucketRule(3, 1), client=BucketRule(1, 1))
    decision = check(limiter, "iss#bob", None, "read", 3, rule)
    assert decision.allowed and dict(decision.remaining) == {"principal": 0.0}
    refused = check(limiter, "iss#bob", None, "read", 1, rule)
    assert refused.limited_by == ("principal",) and refused.retry_after_s == 1.0


def test_check_cost_above_capacity_is_not_retryable_and_says_so() -> None:
    limiter = MemoryRateLimiter(clock=FakeClock())
    rule = RateLimitRule(principal=BucketRule(10, 1), client=BucketRule(4, 1))
    decision = check(limiter, "iss#carol", "app-1", "everything", 5, rule)
    assert not decision.allowed and not decision.retryable
    assert decision.limited_by == ("client",)
    assert "more than the client rate limit" in decision.message
    assert decision.to_dict()["retry_after_s"] is None
    assert limiter.take("p:iss#carol", 10, 10, 1).allowed  # principal untouched


def test_decision_message_and_dict_carry_no_ids() -> None:
    limiter = MemoryRateLimiter(clock=FakeClock())
    rule = RateLimitRule(principal=BucketRule(1, 0.5))
    check(limiter, "https://issuer#patient-jane-doe", "client-xyz", "search", 1, rule)
    decision = check(limiter, "https://issuer#patient-jane-doe", "client-xyz", "search", 1, rule)
    assert decision.message == "rate limit exceeded (principal) for tool search; retry after 2.0 s"
    text = str(decision.to_dict()) + decision.message
    assert "jane" not in text and "client-xyz" not in text


def test_concurrent_checks_on_one_client_never_leak_principal_tokens() -> None:
    limiter = MemoryRateLimiter()
    rule = RateLimitRule(principal=BucketRule(1000, 1e-6), client=BucketRule(50, 1e-6))
    results: list[tuple[int, bool]] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for _ in range(20):
            ok = check(limiter, f"iss#user{n}", "shared-app", "search", 1, rule).allowed
            with lock:
                results.append((n, ok))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(ok for _, ok in results) == 50
    for n in range(8):
        spent = sum(ok for m, ok in results if m == n)
        left = limiter.take_all([BucketRequest(f"p:iss#user{n}", 0, rule.principal)])[0].remaining
        assert left == pytest.approx(1000 - spent, abs=1e-2)


def test_duplicate_keys_in_one_take_are_refused() -> None:
    limiter = MemoryRateLimiter()
    request = BucketRequest("k", 1, BucketRule(5, 1))
    with pytest.raises(InvalidInput):
        limiter.take_all([request, request])


def test_full_buckets_are_swept_when_the_table_grows() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock, max_keys=10)
    for i in range(10):
        limiter.take(f"k{i}", 1, 2, 1)
    assert len(limiter) == 10
    clock.now += 5  # every bucket is full again
    limiter.take("k-new", 1, 2, 1)
    assert len(limiter) == 1
    # A bucket that is not full must survive a sweep (dropping it would hand out free tokens).
    for i in range(11):
        limiter.take(f"busy{i}", 2, 2, 0.001)
    assert not limiter.take("busy0", 1, 2, 0.001).allowed


@pytest.mark.parametrize(
    ("principal_key", "client_id", "tool", "param"),
    [("", "c", "t", "principal_key"), ("p", "", "t", "client_id"), ("p", "c", "", "tool")],
)
def test_check_rejects_empty_names(principal_key: str, client_id: str, tool: str, param: str) -> None:
    with pytest.raises(InvalidInput) as err:
        check(MemoryRateLimiter(), principal_key, client_id, tool, 1, RateLimitRule(BucketRule(1, 1)))
    assert err.value.param == param


def test_open_limiter_without_url_is_in_process() -> None:
    assert isinstance(open_limiter(None), MemoryRateLimiter)
    assert isinstance(open_limiter("  "), MemoryRateLimiter)
