"""The proposal store's rules on both backends: idempotency, decisions, expiry, outcomes, single-use tokens, tamper."""

from __future__ import annotations

import orjson
import pytest
from pg_proposals_support import Backend
from writes_helpers import START, Clock, appointment, make_proposal, principal

from fhirgate.core.writes.proposal import Proposal
from fhirgate.errors import AccessDenied, Conflict, InvalidInput, NotFound, StoreError


def high_risk(**kw: object) -> Proposal:
    """An appointment marked entered-in-error: high risk."""
    p = make_proposal(proposed=appointment("entered-in-error", version=None), **kw)  # type: ignore[arg-type]
    assert p.high_risk
    return p


def test_create_is_idempotent_per_principal_and_key(backend: Backend) -> None:
    store = backend.store
    p = make_proposal(pid="prop-1")
    assert store.create(p) == (p, True)
    assert store.get("prop-1") == p
    again, created = store.create(make_proposal(pid="prop-2"))
    assert not created and again.id == "prop-1"
    assert store.create(make_proposal(pid="prop-3", who=principal("bob")))[1]
    with pytest.raises(Conflict, match="idempotency key"):
        store.create(make_proposal(pid="prop-4", proposed=appointment("noshow", version=None)))
    with pytest.raises(Conflict, match="already exists"):
        store.create(make_proposal(pid="prop-1", idem="other"))
    with pytest.raises(InvalidInput):
        store.create(make_proposal(pid="prop-9", idem="x").decided_as("approved", "bob", None, START))
    assert [x.id for x in store.list()] == ["prop-1", "prop-3"]
    assert [x.id for x in store.list(principal=principal("bob").subject_key)] == ["prop-3"]
    with pytest.raises(NotFound):
        store.get("prop-none")
    with pytest.raises(InvalidInput):
        store.get("../etc")


def test_expiry_is_persisted_and_blocks_decisions(backend: Backend, clock: Clock) -> None:
    store = backend.store
    store.create(make_proposal(pid="prop-1", idem="a"))
    clock.advance(minutes=30)
    store.create(make_proposal(pid="prop-2", idem="b", now=clock.now))
    clock.advance(minutes=31)
    assert [x.id for x in store.list(status="pending")] == ["prop-2"]
    assert [x.id for x in store.list(status="expired")] == ["prop-1"]
    with pytest.raises(Conflict, match=r"approval\.expired"):
        store.decide("prop-1", "bob", True)
    clock.advance(minutes=30)
    with pytest.raises(Conflict, match=r"approval\.expired"):
        store.decide("prop-2", "bob", True)
    assert store.get("prop-2").status == "expired"
    assert store.verify() == (2, [])
    with pytest.raises(InvalidInput):
        store.list(status="done")
    with pytest.raises(InvalidInput):
        store.list(limit=0)


def test_decisions_follow_the_self_approval_and_once_only_rules(backend: Backend) -> None:
    store = backend.store
    p = high_risk()
    store.create(p)
    for name in (p.subject_key, "alice", "ALICE", "  alice "):
        with pytest.raises(AccessDenied) as info:
            store.decide(p.id, name, True)
        assert info.value.reason == "approval.self_approval"
    with pytest.raises(InvalidInput):
        store.decide(p.id, "bob", False)
    approved = store.decide(p.id, "bob", True, "checked with the patient")
    assert (approved.status, approved.decider) == ("approved", "bob")
    with pytest.raises(Conflict, match=r"approval\.decided"):
        store.decide(p.id, "carol", False, "too late")
    low, _ = store.create(make_proposal(pid="prop-2", idem="b"))
    assert store.decide(low.id, "alice", False, "withdrawn").status == "rejected"


def test_an_outcome_is_recorded_once_on_an_approved_proposal(backend: Backend) -> None:
    store = backend.store
    p, _ = store.create(make_proposal())
    with pytest.raises(Conflict):
        store.mark_outcome(p.id, "applied")
    store.decide(p.id, "bob", True)
    with pytest.raises(InvalidInput):
        store.mark_outcome(p.id, "done")
    done = store.mark_outcome(p.id, "failed", "Conflict: version moved")
    assert (done.status, done.outcome, done.decider) == ("failed", "Conflict: version moved", "bob")
    with pytest.raises(Conflict):
        store.mark_outcome(p.id, "applied")
    assert store.get(p.id) == done


def test_a_confirmation_token_is_single_use(backend: Backend, clock: Clock) -> None:
    store = backend.store
    p, _ = store.create(make_proposal())
    alice = principal()
    token = store.confirmation_token(p, alice)
    with pytest.raises(AccessDenied) as forged:
        store.check_confirmation(token, p, principal("mallory"))
    assert forged.value.reason == "confirmation.forged"
    approved = store.check_confirmation(token, p, alice)
    assert (approved.status, approved.decider) == ("approved", alice.subject_key)
    with pytest.raises(AccessDenied) as info:
        store.check_confirmation(token, p, alice)
    assert info.value.reason == "confirmation.replayed"
    with pytest.raises(Conflict):
        store.confirmation_token(p, alice)


def test_a_refused_confirmation_does_not_spend_the_token(backend: Backend, clock: Clock) -> None:
    store = backend.store
    p, _ = store.create(make_proposal())
    alice = principal()
    token = store.confirmation_token(p, alice)
    clock.advance(minutes=10)
    with pytest.raises(AccessDenied) as expired:
        store.check_confirmation(token, p, alice)
    assert expired.value.reason == "confirmation.expired"
    fresh = store.confirmation_token(p, alice)
    store.decide(p.id, "bob", False, "wrong slot")
    with pytest.raises(Conflict):
        store.check_confirmation(fresh, p, alice)
    with pytest.raises(Conflict):  # still a Conflict, not a replay: the refusal spent nothing
        store.check_confirmation(fresh, p, alice)
    with pytest.raises(AccessDenied) as high:
        store.confirmation_token(store.create(high_risk(pid="prop-h", idem="h"))[0], alice)
    assert high.value.reason == "confirmation.high_risk"


def test_tampered_rows_are_refused_and_reported_by_verify(backend: Backend) -> None:
    store = backend.store
    p, _ = store.create(high_risk())
    store.create(make_proposal(pid="prop-2", idem="b"))
    body = orjson.loads(p.to_json())
    body["risk"] = "low"  # downgrade to allow self-confirmation
    body["risk_reasons"] = ["risk.administrative"]
    backend.edit(
        "UPDATE proposals SET body=? WHERE id='prop-1'", orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode()
    )
    backend.edit("UPDATE proposals SET status='approved' WHERE id='prop-2'")
    with pytest.raises(StoreError, match="integrity"):
        store.get("prop-1")
    with pytest.raises(StoreError, match="disagree"):
        store.get("prop-2")
    with pytest.raises(StoreError):
        store.decide("prop-1", "alice", True)
    with pytest.raises(StoreError):
        store.list()
    checked, problems = store.verify()
    assert checked == 2 and [x.id for x in problems] == ["prop-1", "prop-2"]
