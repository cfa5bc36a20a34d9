"""Rate limits through the Gateway, audit flags for governance, the role claim in tokens, the policy at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from governance_support import Facts, ctx, who

from fhirgate.app import build_gateway, resolve_policy
from fhirgate.audit.record import AuditRecord
from fhirgate.auth.principal_builder import principal_from_claims
from fhirgate.config import DataDir
from fhirgate.errors import AccessDenied, AuthenticationError, ConfigError, RateLimited
from fhirgate.policy_loader import load_policy
from fhirgate.ratelimit import MemoryRateLimiter
from fhirgate.service.gateway import Gateway
from fhirgate.service.governance import Governance
from fhirgate.store.factory import open_store


class ListSink:
    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    def append(self, record: AuditRecord) -> int:
        self.records.append(record)
        return len(self.records)


def _gateway(facts: Facts, policy_text: str | None = None) -> tuple[Gateway, ListSink]:
    store = open_store(facts.data_dir, create=False)
    policy = load_policy(None)
    if policy_text is not None:
        from fhirgate.core.policy.rules import load_policy_text

        policy = load_policy_text(policy_text, "test")
    sink = ListSink()
    gov = Governance(policy, store, limiter=MemoryRateLimiter())
    return Gateway(store, sink, b"c" * 32, governance=gov), sink


TIGHT = """
version = 1
default_role = "staff"
practitioner_role = "staff"
patient_role = "me"
[rate_limits]
capacity = 3
refill_per_second = 0.01
[rate_limits.costs]
patient_summary = 2
[roles.staff]
access = "practice"
resource_types = "*"
purposes = ["TREAT"]
[roles.me]
access = "own-record"
resource_types = "*"
purposes = ["PATRQT"]
"""


def test_rate_limit_refuses_with_retry_after_and_is_audited(facts: Facts) -> None:
    gw, sink = _gateway(facts, TIGHT)
    p = who(sub="limited")
    try:
        gw.whoami(ctx(p))
        gw.patient_summary(ctx(p), sorted(facts.care_team - facts.optouts)[0])  # cost 2: bucket now empty
        with pytest.raises(RateLimited) as info:
            gw.whoami(ctx(p))
        assert info.value.retry_after is not None and info.value.retry_after > 1
        assert "retry after" in info.value.message
        assert sink.records[-1].outcome == "denied" and sink.records[-1].reason == "rate_limited"
        gw.whoami(ctx(who(sub="someone-else")))  # another principal has its own bucket
    finally:
        gw.close()


def test_governance_fields_are_audited_and_break_glass_flagged(facts: Facts) -> None:
    gw, sink = _gateway(facts)
    doc = who(fhir_user=facts.practitioner, sub="doc-audit")
    try:
        gw.whoami(ctx(doc))
        assert (sink.records[-1].role, sink.records[-1].purpose, sink.records[-1].break_glass) == (
            "clinician",
            "TREAT",
            False,
        )
        gw.break_glass(ctx(doc), "patient collapsed, need medication list now")
        gw.whoami(ctx(doc))
        last = sink.records[-1]
        assert last.break_glass and last.purpose == "ETREAT"
        assert b'"break_glass":true' in last.to_json()
        with pytest.raises(AccessDenied):
            gw.find_patients(ctx(who(role="analyst")), filters={"name": "a"})
        assert sink.records[-1].outcome == "denied" and sink.records[-1].role == "analyst"
    finally:
        gw.close()


def test_old_records_hash_the_same() -> None:
    """Records without governance fields serialize exactly as before the fields existed."""
    rec = AuditRecord.new(
        request_id="r", transport="cli", method="m", interaction="i", balp_kind="query", outcome="success"
    )
    assert b"role" not in rec.to_json() and b"break_glass" not in rec.to_json()


def test_role_claim_is_read_and_checked() -> None:
    base = {"sub": "u", "iss": "urn:x", "scope": "user/*.rs"}
    assert principal_from_claims({**base, "fhirgate_role": "front_desk"}).role == "front_desk"
    assert principal_from_claims({**base, "org_role": "billing"}, role_claim="org_role").role == "billing"
    for bad in (["billing"], "Billing Dept", 3):
        with pytest.raises(AuthenticationError):
            principal_from_claims({**base, "fhirgate_role": bad})


def test_policy_from_settings_and_invalid_policy_refuses_to_start(facts: Facts, tmp_path: Path) -> None:
    data = DataDir(tmp_path / "d").ensure()
    (data.path / "strict.toml").write_text(TIGHT, encoding="utf-8")
    data.settings_path.write_text('[policy]\nfile = "strict.toml"\n', encoding="utf-8")
    assert list(resolve_policy(data).roles) == ["staff", "me"]
    (data.path / "strict.toml").write_text(TIGHT.replace('access = "practice"', 'access = "everyone"'), "utf-8")
    with pytest.raises(ConfigError) as info:
        resolve_policy(data)
    assert "roles.staff.access" in info.value.message
    (data.path / "strict.toml").unlink()
    with pytest.raises(ConfigError) as info:
        build_gateway(facts.data_dir, key=None, policy=resolve_policy(data))
    assert "strict.toml" in info.value.message


def test_two_workers_share_rate_limits_through_redis(facts: Facts) -> None:
    """Two gateways (as two server processes would) with the policy's redis_url: one bucket per principal."""
    import uuid

    from fhirgate.ratelimit.redis_store import RedisRateLimiter

    url = "redis://127.0.0.1:6379/0"
    try:
        prefix = f"fhirgate:test:{uuid.uuid4().hex}:"
        limiters = [RedisRateLimiter(url, prefix=prefix) for _ in range(2)]
    except Exception:  # no Redis here: nothing to share
        pytest.skip("Redis not reachable at 127.0.0.1:6379")
    from fhirgate.core.policy.rules import load_policy_text

    policy = load_policy_text(TIGHT, "test")
    store = open_store(facts.data_dir, create=False)
    gateways = [
        Gateway(store, ListSink(), b"c" * 32, governance=Governance(policy, store, limiter=lim)) for lim in limiters
    ]
    p = who(sub=f"shared-{uuid.uuid4().hex}")
    gateways[0].whoami(ctx(p))
    gateways[1].whoami(ctx(p))
    gateways[0].whoami(ctx(p))  # 3 of 3 tokens, taken through two workers
    with pytest.raises(RateLimited):
        gateways[1].whoami(ctx(p))
    for lim in limiters:
        lim.close()
    store.close()
