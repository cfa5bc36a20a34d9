"""Break-glass grants in process and in Redis: shared between Governance instances, expiring, failing closed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from fhirgate.config import DataDir
from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.scopes import ScopeSet
from fhirgate.errors import InvalidInput, StoreError
from fhirgate.policy_loader import load_policy
from fhirgate.ratelimit import MemoryRateLimiter
from fhirgate.service.governance import Governance
from fhirgate.shared_state.grants import GrantStore, MemoryGrants, RedisGrants, open_grants
from fhirgate.store.contract import FhirStore
from fhirgate.store.factory import open_store

CLOSED_PORT_URL = "redis://127.0.0.1:1/0"
REASON = "patient collapsed in clinic, need the medication list"


class Clock:
    """A settable epoch clock."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def doctor(sub: str = "dr-a", expires_at: float | None = None) -> Principal:
    return Principal(
        sub=sub,
        issuer="urn:test",
        scopes=ScopeSet.parse("user/*.rs"),
        client_id="tests",
        fhir_user="Practitioner/dr-1",
        expires_at=expires_at,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FhirStore]:
    opened = open_store(DataDir(tmp_path / "data"))
    yield opened
    opened.close()


def governance(store: FhirStore, grants: GrantStore) -> Governance:
    return Governance(load_policy(None), store, limiter=MemoryRateLimiter(), grants=grants)


# -- the stores ------------------------------------------------------------------------------------


def test_memory_grants_expire_and_are_per_subject() -> None:
    clock = Clock()
    grants = MemoryGrants(clock=clock)
    grants.grant("iss#a", clock.now + 60)
    assert grants.active("iss#a") and not grants.active("iss#b")
    clock.now += 60
    assert not grants.active("iss#a")
    grants.grant("iss#a", clock.now - 1)  # already over: no grant
    assert not grants.active("iss#a")
    with pytest.raises(InvalidInput):
        grants.grant("", clock.now + 60)
    with pytest.raises(InvalidInput):
        grants.grant("iss#a", float("nan"))


def test_no_url_means_in_process_grants() -> None:
    assert isinstance(open_grants(None), MemoryGrants)
    assert isinstance(open_grants("  "), MemoryGrants)
    assert isinstance(open_grants(CLOSED_PORT_URL), RedisGrants)


def test_redis_grant_is_one_hashed_key_that_expires_by_itself(
    redis_url: str, redis_client: redis.Redis, prefix: str
) -> None:
    grants = RedisGrants(redis_url, prefix)
    until = time.time() + 30
    grants.grant("urn:test#dr-a", until)
    keys = [k.decode() for k in redis_client.scan_iter(match=prefix + "*")]
    assert keys == [grants.redis_key("urn:test#dr-a")]
    assert "dr-a" not in keys[0]  # the subject is digested, never stored in clear
    assert float(redis_client.get(keys[0]) or 0) == until
    assert 0 < redis_client.pttl(keys[0]) <= 30_000
    assert grants.active("urn:test#dr-a") and not grants.active("urn:test#dr-b")
    grants.grant("urn:test#dr-a", time.time() - 1)  # an expiry already past withdraws the grant
    assert not grants.active("urn:test#dr-a") and not list(redis_client.scan_iter(match=prefix + "*"))
    grants.close()


def test_redis_removes_the_grant_at_its_expiry(redis_url: str, prefix: str) -> None:
    grants = RedisGrants(redis_url, prefix)
    grants.grant("urn:test#dr-a", time.time() + 0.3)
    assert grants.active("urn:test#dr-a")
    time.sleep(0.5)
    assert not grants.active("urn:test#dr-a")
    grants.close()


# -- through Governance ----------------------------------------------------------------------------


def test_a_grant_made_through_one_worker_is_seen_by_another(redis_url: str, prefix: str, store: FhirStore) -> None:
    worker_a = governance(store, RedisGrants(redis_url, prefix))
    worker_b = governance(store, RedisGrants(redis_url, prefix))
    opener, colleague = doctor("dr-a"), doctor("dr-b")
    assert not worker_b.break_glass_active(opener)
    role, until = worker_a.break_glass(opener, REASON)
    assert role.break_glass and until > time.time()
    assert worker_b.break_glass_active(opener) and worker_b.standing(opener).break_glass
    assert not worker_b.break_glass_active(colleague)
    worker_a.close()
    worker_b.close()


def test_a_shared_grant_ends_with_the_token_and_in_every_worker(redis_url: str, prefix: str, store: FhirStore) -> None:
    worker_a = governance(store, RedisGrants(redis_url, prefix))
    worker_b = governance(store, RedisGrants(redis_url, prefix))
    short = doctor("dr-a", expires_at=time.time() + 0.3)  # the token expires long before the role's minutes
    _, until = worker_a.break_glass(short, REASON)
    assert until == short.expires_at and worker_b.break_glass_active(short)
    time.sleep(0.5)
    assert not worker_a.break_glass_active(short) and not worker_b.break_glass_active(short)
    worker_a.close()
    worker_b.close()


def test_in_process_grants_stay_in_their_process(store: FhirStore) -> None:
    worker_a, worker_b = governance(store, MemoryGrants()), governance(store, MemoryGrants())
    worker_a.break_glass(doctor(), REASON)
    assert worker_a.break_glass_active(doctor()) and not worker_b.break_glass_active(doctor())


def test_an_unreachable_redis_fails_closed(store: FhirStore) -> None:
    gov = governance(store, RedisGrants(CLOSED_PORT_URL, timeout_s=0.5))
    with pytest.raises(StoreError, match="no grant was made") as info:
        gov.break_glass(doctor(), REASON)
    assert "127.0.0.1:1" in info.value.message
    assert not gov.break_glass_active(doctor())
    assert not gov.standing(doctor()).break_glass
    gov.close()


def test_a_password_in_the_url_stays_out_of_errors(store: FhirStore) -> None:
    gov = governance(store, RedisGrants("redis://user:s3cret@127.0.0.1:1/0?password=s3cret", timeout_s=0.5))
    with pytest.raises(StoreError) as info:
        gov.break_glass(doctor(), REASON)
    assert "s3cret" not in info.value.message
    gov.close()
