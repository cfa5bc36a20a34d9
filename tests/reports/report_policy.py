"""The policy report tests run under: the shipped default policy without its rate limit."""

from __future__ import annotations

import dataclasses

from fhirgate.core.policy.rules import Policy, RateRule
from fhirgate.policy_loader import load_policy

# The default policy's rate limit (60 tokens, run_report costs 5) would throttle a test session that runs
# hundreds of reports as one principal; these tests use the default policy with an unbounded bucket.
UNTHROTTLED = RateRule(1e9, 1e9)


def unthrottled_policy() -> Policy:
    """The shipped default policy (roles, labels, consent rules) without its rate limit."""
    return dataclasses.replace(load_policy(None), rate_default=UNTHROTTLED)
