"""Token-bucket arithmetic: refill, cap, refusal takes nothing, exact retry-after, costs above capacity."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhirgate.errors import InvalidInput
from fhirgate.ratelimit.bucket import (
    REASON_EMPTY,
    REASON_TOO_COSTLY,
    BucketRequest,
    BucketRule,
    BucketState,
    available,
    retry_after,
    take,
    take_all,
)

RULE = BucketRule(capacity=10, refill_per_second=2)


def test_missing_bucket_is_full_and_take_subtracts() -> None:
    verdict, state = take(None, 100.0, 3, RULE)
    assert verdict.allowed and verdict.remaining == 7 and verdict.retry_after_s == 0
    assert state == BucketState(7.0, 100.0)


def test_refill_is_linear_and_capped() -> None:
    empty = BucketState(0.0, 0.0)
    assert available(empty, 1.5, RULE) == pytest.approx(3.0)
    assert available(empty, 4.0, RULE) == pytest.approx(8.0)
    assert available(empty, 3600.0, RULE) == 10.0  # never above capacity


def test_clock_going_backwards_adds_nothing() -> None:
    assert available(BucketState(4.0, 50.0), 10.0, RULE) == 4.0


def test_refused_take_consumes_nothing() -> None:
    state = BucketState(2.0, 0.0)
    verdict, after = take(state, 0.0, 5, RULE)
    assert not verdict.allowed and verdict.reason == REASON_EMPTY
    assert after is state
    assert verdict.remaining == 2.0
    assert verdict.retry_after_s == 1.5  # 3 tokens at 2/s


@pytest.mark.parametrize(
    ("tokens", "cost", "rate", "expected"),
    [
        (0.0, 3, 2.0, 1.5),
        (0.5, 1, 3.0, 0.2),  # 1/6 s rounded up to 0.2
        (0.0, 1, 10.0, 0.1),  # exactly 0.1 despite float noise
        (0.0, 3, 10.0, 0.3),  # 0.30000000000000004 must not become 0.4
        (0.999, 1, 1000.0, 0.1),  # tiny waits still round up to one step
        (5.0, 5, 1.0, 0.0),
    ],
)
def test_retry_after_is_exact_rounded_up_to_a_tenth(tokens: float, cost: int, rate: float, expected: float) -> None:
    assert retry_after(tokens, cost, BucketRule(10, rate)) == expected


@given(
    tokens=st.floats(min_value=0, max_value=50),
    cost=st.integers(min_value=1, max_value=50),
    rate=st.floats(min_value=0.01, max_value=500),
)
def test_waiting_retry_after_is_enough_and_a_step_less_is_not(tokens: float, cost: int, rate: float) -> None:
    rule = BucketRule(capacity=50, refill_per_second=rate)
    state = BucketState(tokens, 0.0)
    verdict, _ = take(state, 0.0, cost, rule)
    if verdict.allowed:
        assert tokens + 1e-6 >= cost
        return
    wait = verdict.retry_after_s
    assert wait >= 0.1 and math.isclose(wait * 10, round(wait * 10))
    assert take(state, wait, cost, rule)[0].allowed
    if wait >= 0.2:
        assert not take(state, wait - 0.1, cost, rule)[0].allowed


def test_cost_above_capacity_is_always_refused_with_a_reason() -> None:
    for tokens in (0.0, 10.0):
        verdict, after = take(BucketState(tokens, 0.0), 1e9, 11, RULE)
        assert not verdict.allowed
        assert verdict.reason == REASON_TOO_COSTLY
        assert not verdict.retryable and verdict.retry_after_s == math.inf
        assert after == BucketState(tokens, 0.0)


def test_zero_cost_is_allowed_even_when_empty() -> None:
    verdict, _ = take(BucketState(0.0, 0.0), 0.0, 0, RULE)
    assert verdict.allowed and verdict.remaining == 0


@pytest.mark.parametrize("cost", [-1, True, 1.5, "2", None])
def test_bad_cost_is_invalid_input(cost: object) -> None:
    with pytest.raises(InvalidInput) as err:
        take(None, 0.0, cost, RULE)  # type: ignore[arg-type]
    assert err.value.param == "cost"


@pytest.mark.parametrize(
    ("capacity", "rate", "param"),
    [
        (0, 1, "capacity"),
        (-1, 1, "capacity"),
        (math.nan, 1, "capacity"),
        (1, 0, "refill_per_second"),
        (1, math.inf, "refill_per_second"),
        (True, 1, "capacity"),
        ("5", 1, "capacity"),
    ],
)
def test_bad_rule_is_invalid_input(capacity: object, rate: object, param: str) -> None:
    with pytest.raises(InvalidInput) as err:
        BucketRule(capacity, rate)  # type: ignore[arg-type]
    assert err.value.param == param


def test_per_minute_rule() -> None:
    rule = BucketRule.per_minute(120, burst=20)
    assert rule.capacity == 20 and rule.refill_per_second == 2.0
    assert rule.ttl_seconds == 10.0


def test_take_all_is_all_or_nothing() -> None:
    small = BucketRule(capacity=2, refill_per_second=1)
    requests = [BucketRequest("p:a", 2, RULE), BucketRequest("c:b", 3, small)]
    states = [BucketState(10.0, 0.0), BucketState(2.0, 0.0)]
    verdicts, after = take_all(states, 0.0, requests)
    assert [v.allowed for v in verdicts] == [False, False]
    assert verdicts[0].reason is None and verdicts[0].retry_after_s == 0  # this bucket was not the limit
    assert verdicts[1].reason == REASON_TOO_COSTLY
    assert after == states
    verdicts, after = take_all(states, 0.0, [BucketRequest("p:a", 2, RULE), BucketRequest("c:b", 2, small)])
    assert all(v.allowed for v in verdicts)
    assert after == [BucketState(8.0, 0.0), BucketState(0.0, 0.0)]


@pytest.mark.parametrize("key", ["", "x" * 1025, None])
def test_bad_key_is_invalid_input(key: object) -> None:
    with pytest.raises(InvalidInput):
        BucketRequest(key, 1, RULE)  # type: ignore[arg-type]
