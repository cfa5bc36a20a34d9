"""Worker processes for the cross-process races: each opens its own PostgreSQL proposal store, as a worker would.

Run under multiprocessing `spawn` (fresh interpreters, nothing shared but the database): each waits on a
start event, makes one attempt, and reports "ok" or the refusal's reason on a queue.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from writes_helpers import MAC_KEY, principal

from fhirgate.core.writes.proposal import Proposal
from fhirgate.errors import AccessDenied, Conflict
from fhirgate.writes.pg_approvals import open_pg_proposals
from pg_server import POSTGRES_URL


def _attempt(kind: str, schema: str, proposal_json: str, arg: str) -> str:
    store = open_pg_proposals(POSTGRES_URL, schema, MAC_KEY)
    try:
        proposal = Proposal.from_json(proposal_json)
        if kind == "confirm":
            store.check_confirmation(arg, proposal, principal())
        elif kind == "create":
            stored, created = store.create(replace(proposal, id=arg))
            return "ok" if created else "existing " + stored.id
        else:
            store.decide(proposal.id, arg, True, f"approved by {arg}")
        return "ok"
    except AccessDenied as exc:
        return exc.reason or "denied"
    except Conflict as exc:
        return "conflict: " + exc.message.split(":", 1)[0]
    finally:
        store.close()


def race_worker(kind: str, schema: str, proposal_json: str, arg: str, start: Any, results: Any) -> None:
    """Wait for the start signal, then confirm with token `arg`, approve as decider `arg` or create as id `arg`."""
    start.wait(30)
    try:
        results.put(_attempt(kind, schema, proposal_json, arg))
    except Exception as exc:  # reported to the test, which fails on it
        results.put(f"error: {type(exc).__name__}: {exc}")
