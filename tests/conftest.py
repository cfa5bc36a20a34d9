"""Shared fixtures: the ../shared reference folder (skipped with a clear message when absent)."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import redis

from fhirgate.ratelimit import BucketRequest, RateVerdict
from fhirgate.service import governance

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
# Analytics replicas of PostgreSQL test schemas (analytics/views/replica.py) go to a scratch folder, never the
# user's cache; subprocesses started by tests inherit it.
os.environ.setdefault("FHIRGATE_REPLICA_DIR", tempfile.mkdtemp(prefix="fhirgate-test-replicas-"))
REDIS_URL = os.environ.get("FHIRGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ../shared folder beside the checkout; tests that need it skip when it is absent."""
    if not (SHARED / "data" / "synthea").is_dir():
        pytest.skip(f"../shared not found at {SHARED}: Synthea sample and conformance suites unavailable")
    return SHARED


@pytest.fixture(scope="session")
def synthea_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "synthea"


class UnlimitedLimiter:
    """A rate-limit store that always allows: most tests call far faster than the default policy's rate."""

    def take(self, key: str, cost: int, capacity: float, refill_per_second: float) -> RateVerdict:
        return RateVerdict(True, capacity, 0.0)

    def take_all(self, requests: Sequence[BucketRequest]) -> list[RateVerdict]:
        return [RateVerdict(True, r.rule.capacity, 0.0) for r in requests]

    def close(self) -> None:
        pass


@pytest.fixture(scope="session", autouse=True)
def _no_rate_limits() -> Iterator[None]:
    """Gateways built in tests get an unlimited store by default; rate-limit tests pass their own limiter."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(governance, "open_limiter", lambda url: UnlimitedLimiter())
        yield


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis URL; tests using it skip when no Redis answers there, and fail under FHIRGATE_REQUIRE_REDIS=1
    (set by .ci/run, whose machine serves Redis: there the shared rate-limit, grant and worker tests always run)."""
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5, socket_timeout=0.5)
        client.ping()
        client.close()
    except redis.RedisError:
        if os.environ.get("FHIRGATE_REQUIRE_REDIS") == "1":
            pytest.fail(f"FHIRGATE_REQUIRE_REDIS=1 but Redis is not reachable at {REDIS_URL}")
        pytest.skip(f"Redis not reachable at {REDIS_URL}")
    return REDIS_URL


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A Redis key prefix unique to this test; every key under it is deleted afterwards."""
    value = f"fhirgate:test:{uuid.uuid4().hex}:"
    yield value
    keys = list(redis_client.scan_iter(match=value + "*", count=1000))
    if keys:
        redis_client.delete(*keys)
