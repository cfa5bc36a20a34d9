"""Fixtures for the demo generator tests: generated practices shared per session."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from fhirgate.demo.generator import DemoSummary, PracticeGenerator

TODAY = dt.date(2025, 6, 30)


class GeneratedPractice:
    """A generated practice held in memory for assertions."""

    def __init__(self, resources: list[dict[str, Any]], summary: DemoSummary, batches: int) -> None:
        self.resources = resources
        self.summary = summary
        self.batches = batches

    def of(self, resource_type: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if r["resourceType"] == resource_type]


def _generate(patients: int, seed: int) -> GeneratedPractice:
    gen = PracticeGenerator(patients=patients, seed=seed, today=TODAY)
    batches = list(gen.batches())
    return GeneratedPractice([r for b in batches for r in b], gen.summary, len(batches))


@pytest.fixture(scope="session")
def demo_practice() -> GeneratedPractice:
    return _generate(120, 42)


@pytest.fixture(scope="session")
def demo_big_practice() -> GeneratedPractice:
    return _generate(300, 5)
