"""Shared fixtures: the ../shared reference folder (skipped with a clear message when absent)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from fhirgate.ratelimit import BucketRequest, RateVerdict
from fhirgate.service import governance

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


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
