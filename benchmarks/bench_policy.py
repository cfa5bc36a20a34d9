"""The default governance policy with rate limits raised out of the way: benchmarks measure latency, not limits."""

from __future__ import annotations

import re
from pathlib import Path

from fhirgate.core.policy.rules import Policy, load_policy_text
from fhirgate.policy_loader import default_policy_text


def unlimited_text() -> str:
    """The default policy's TOML with capacity and refill at 100,000 (everything else unchanged)."""
    text = default_policy_text()
    text = re.sub(r"(?m)^capacity = .*$", "capacity = 100000", text, count=1)
    return re.sub(r"(?m)^refill_per_second = .*$", "refill_per_second = 100000.0", text, count=1)


def unlimited_policy() -> Policy:
    return load_policy_text(unlimited_text(), "benchmark policy")


def unlimited_policy_file(folder: Path) -> Path:
    path = folder / "benchmark-policy.toml"
    path.write_text(unlimited_text(), encoding="utf-8")
    return path
