"""Several worker processes on one PostgreSQL proposal store: a token is used once, a proposal decided once."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from pg_proposals_support import drop_schema, scratch_schema
from pg_race_support import race_worker
from writes_helpers import MAC_KEY, appointment, make_proposal, principal

from fhirgate.writes.pg_approvals import PgProposalStore, open_pg_proposals
from pg_server import POSTGRES_URL, needs_postgres

pytestmark = needs_postgres

WORKERS = 4


@pytest.fixture
def shared() -> Iterator[PgProposalStore]:
    """A store on the real clock (the worker processes use it too) in a throw-away schema."""
    schema = scratch_schema()
    store = open_pg_proposals(POSTGRES_URL, schema, MAC_KEY)
    yield store
    store.close()
    drop_schema(schema)


def race(kind: str, schema: str, proposal_json: str, args: list[str]) -> list[str]:
    """Start one spawned process per argument, release them together, and collect their results."""
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=race_worker, args=(kind, schema, proposal_json, a, start, results)) for a in args]
    for proc in procs:
        proc.start()
    start.set()
    out = [results.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    return sorted(out)


def test_a_token_used_by_racing_workers_confirms_exactly_once(shared: PgProposalStore) -> None:
    p, _ = shared.create(make_proposal(now=datetime.now(UTC)))
    token = shared.confirmation_token(p, principal())
    results = race("confirm", shared.schema, p.to_json().decode(), [token] * WORKERS)
    assert results == ["confirmation.replayed"] * (WORKERS - 1) + ["ok"]
    stored = shared.get(p.id)
    assert (stored.status, stored.decider) == ("approved", principal().subject_key)


def test_racing_deciders_make_exactly_one_decision(shared: PgProposalStore) -> None:
    p, _ = shared.create(make_proposal(now=datetime.now(UTC), proposed=appointment("entered-in-error", version=None)))
    deciders = [f"approver-{i}" for i in range(WORKERS)]
    results = race("decide", shared.schema, p.to_json().decode(), deciders)
    assert results == ["conflict: approval.decided"] * (WORKERS - 1) + ["ok"]
    stored = shared.get(p.id)
    assert stored.status == "approved" and stored.decider in deciders
    assert stored.decision_reason == f"approved by {stored.decider}"


def test_racing_creates_with_one_idempotency_key_make_one_proposal(shared: PgProposalStore) -> None:
    template = make_proposal(pid="prop-template", now=datetime.now(UTC))
    ids = [f"prop-{i}" for i in range(WORKERS)]
    results = race("create", shared.schema, template.to_json().decode(), ids)
    winner = [p.id for p in shared.list()]
    assert len(winner) == 1 and winner[0] in ids
    assert results == sorted(["ok"] + [f"existing {winner[0]}"] * (WORKERS - 1))
