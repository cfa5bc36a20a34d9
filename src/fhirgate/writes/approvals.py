"""The proposal store: pending writes, their decisions and confirmation tokens, in `proposals.db`, every row signed.

Each row holds a proposal's canonical JSON and `mac = HMAC-SHA256(key, "fhirgate-proposal|" id "|" json)`
with the key from `DataDir.secret("proposals")` (kept in keys/, not in the database). Every read checks
the MAC and that the indexed columns agree with the signed JSON, so an edited row, a row copied under
another id or a forged approval is refused (StoreError naming the id) instead of acted on. Not covered
(as with audit truncation): someone able to write proposals.db can put back an older, validly signed row
of the same proposal; the store write's versionId check and the audit record of the decision bound that.

Confirmation tokens serve the low-risk in-chat path: `v1.<proposal id>.<nonce>.<expiry ms>.<mac>`, the MAC
binding proposal id, its content hash (what the write does), principal (subject key and client id),
nonce and expiry. A token is single-use: checking it records its nonce and approves the proposal in one
transaction, so a replay is refused.
"""

from __future__ import annotations

import builtins
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw

from fhirgate.config import DataDir
from fhirgate.core.policy.principal import Principal
from fhirgate.core.writes.proposal import Proposal, format_instant
from fhirgate.database import open_sqlite
from fhirgate.errors import Conflict, NotFound, StoreError
from fhirgate.writes import proposal_rules as rules
from fhirgate.writes.proposal_rules import (
    DEFAULT_TTL,
    MAX_LIST,
    TOKEN_TTL,
    Clock,
    ProposalRules,
    Proposals,
    RowProblem,
    utcnow,
)

__all__ = [
    "DEFAULT_TTL",
    "FILE_NAME",
    "MAX_LIST",
    "SECRET_NAME",
    "TOKEN_TTL",
    "Clock",
    "ProposalStore",
    "Proposals",
    "RowProblem",
    "open_proposals",
]

FILE_NAME = "proposals.db"
SECRET_NAME = "proposals"  # noqa: S105 - the name of the key file in keys/, not a secret

_SCHEMA = """
CREATE TABLE IF NOT EXISTS proposals(
    id TEXT PRIMARY KEY,
    subject_key TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    status TEXT NOT NULL,
    created TEXT NOT NULL,
    body TEXT NOT NULL,
    mac TEXT NOT NULL,
    UNIQUE(subject_key, idempotency_key)
);
CREATE INDEX IF NOT EXISTS proposals_status ON proposals(status, created);
CREATE TABLE IF NOT EXISTS used_tokens(
    nonce TEXT PRIMARY KEY,
    proposal_id TEXT NOT NULL,
    used TEXT NOT NULL
);
"""


class ProposalStore(ProposalRules):
    """Signed proposals and single-use confirmation tokens in their own (optionally encrypted) SQLite database."""

    def __init__(self, path: Path, *, mac_key: bytes, key: str | None = None, clock: Clock = utcnow) -> None:
        super().__init__(mac_key, clock)
        self.path = Path(path)
        # One connection shared by the server's worker threads: every use holds this lock (apsw refuses a
        # connection busy in another thread, and two threads' transactions must not interleave).
        self._lock = threading.RLock()
        self._conn = open_sqlite(self.path, key=key)
        try:
            with self._transaction():
                self._conn.execute(_SCHEMA)
        except apsw.Error as exc:
            self._conn.close()
            raise StoreError(f"{FILE_NAME} could not be initialised: {type(exc).__name__}") from None

    # -- plumbing ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[apsw.Connection]:
        conn = self._conn
        with self._lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(apsw.Error):
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _select(self, where: str = "", params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        sql = f"SELECT id, subject_key, idempotency_key, status, created, body, mac FROM proposals {where}"  # noqa: S608 - `where` is always a literal of this module
        try:
            with self._lock:
                return [tuple(r) for r in self._conn.execute(sql, params).fetchall()]
        except apsw.Error as exc:
            raise StoreError(f"{FILE_NAME} read failed: {type(exc).__name__}") from None

    def _write(self, proposal: Proposal, *, insert: bool) -> None:
        values = self.row_values(proposal)
        if insert:
            self._conn.execute(
                "INSERT INTO proposals(subject_key, idempotency_key, status, created, body, mac, id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                values,
            )
        else:
            self._conn.execute(
                "UPDATE proposals SET subject_key=?, idempotency_key=?, status=?, created=?, body=?, mac=? WHERE id=?",
                values,
            )

    def _load(self, proposal_id: str) -> Proposal:
        rows = self._select("WHERE id=?", (rules.check_id(proposal_id),))
        if not rows:
            raise NotFound(f"no proposal {proposal_id}")
        return self.check_row(rows[0])

    def _expire_if_due(self, proposal: Proposal) -> Proposal:
        """Inside a transaction: a pending proposal past its expiry becomes `expired` (signed, persisted)."""
        if self.due(proposal):
            proposal = proposal.expired()
            self._write(proposal, insert=False)
        return proposal

    # -- proposals -----------------------------------------------------------------------------

    def create(self, proposal: Proposal) -> tuple[Proposal, bool]:
        """Store a new pending proposal; (stored proposal, True), or (existing, False) when the principal already
        used this idempotency key for the same request. Conflict when the key was used for a different request."""
        rules.check_new(proposal)
        with self._transaction():
            rows = self._select(
                "WHERE subject_key=? AND idempotency_key=?", (proposal.subject_key, proposal.idempotency_key)
            )
            if rows:
                existing = self._expire_if_due(self.check_row(rows[0]))
                return rules.same_request(existing, proposal), False
            if self._select("WHERE id=?", (proposal.id,)):
                raise Conflict(f"proposal id {proposal.id} already exists")
            self._write(proposal, insert=True)
        return proposal, True

    def get(self, proposal_id: str) -> Proposal:
        """One proposal, verified; a pending one past its expiry is returned (and stored) as expired."""
        with self._transaction():
            return self._expire_if_due(self._load(proposal_id))

    def list(self, *, status: str | None = None, principal: str | None = None, limit: int = 100) -> list[Proposal]:
        """Proposals newest first, filtered by status and proposer subject key; each row is verified."""
        rules.check_list(status, limit)
        with self._transaction():
            for row in self._select("WHERE status='pending'"):
                self._expire_if_due(self.check_row(row))
            clauses, params = [], []
            if status is not None:
                clauses.append("status=?")
                params.append(status)
            if principal is not None:
                clauses.append("subject_key=?")
                params.append(principal)
            where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
            rows = self._select(f"{where} ORDER BY created DESC, id LIMIT ?", (*params, limit))
            return [self.check_row(r) for r in rows]

    def decide(self, proposal_id: str, decider: str, approve: bool, reason: str | None = None) -> Proposal:
        """Approve or reject a pending proposal as `decider`.

        Refused (AccessDenied, reason `approval.self_approval`) when the decider is the proposer of a high-risk
        proposal (its subject key or its bare subject); the proposer may still reject (withdraw) it. Refused
        (Conflict) when the proposal expired (`approval.expired`) or was already decided (`approval.decided`).
        A rejection needs a reason.
        """
        decider = rules.check_decision(decider, approve, reason)
        with self._transaction():
            proposal = self._expire_if_due(self._load(proposal_id))
        if proposal.status == "expired":  # raised outside the transaction, so the expiry found here is stored
            raise rules.expired_conflict(proposal)
        with self._transaction():
            proposal = self._expire_if_due(self._load(proposal_id))
            decided = rules.decision(proposal, decider, approve, reason, self.now())
            self._write(decided, insert=False)
        return decided

    def mark_outcome(self, proposal_id: str, status: str, detail: str | None = None) -> Proposal:
        """Record what became of an approved proposal's write: `applied`, or `failed` with why (ids only).

        Only an approved proposal can be marked, once (Conflict otherwise), so a write is never recorded
        twice; the decider, reason and time stay those of the approval, `detail` becomes `outcome`.
        """
        rules.check_outcome(status, detail)
        with self._transaction():
            done = rules.outcome(self._load(proposal_id), status, detail)
            self._write(done, insert=False)
        return done

    # -- confirmation tokens -------------------------------------------------------------------

    def check_confirmation(self, token: str, proposal: Proposal, principal: Principal) -> Proposal:
        """Check a confirmation token and, in one transaction, mark it used and approve the proposal.

        Refusals (AccessDenied with these reasons): `confirmation.malformed`, `confirmation.wrong_proposal`
        (token for another proposal, or the proposal changed), `confirmation.forged` (MAC mismatch, which
        includes another principal's token), `confirmation.expired`, `confirmation.replayed`; a proposal no
        longer pending is a Conflict. Returns the approved proposal (decider = the principal's subject key).
        """
        nonce, expiry_ms, mac = self.parse_token(token, proposal)
        with self._transaction():
            stored = self._load(proposal.id)
            self.check_token_mac(stored, proposal, principal, nonce, expiry_ms, mac)
            used = self._conn.execute("SELECT 1 FROM used_tokens WHERE nonce=?", (nonce,)).fetchone()
            if used is not None:
                raise rules.denied("confirmation.replayed", "confirmation token was already used")
            now = self.now()
            self.check_token_expiry(now, expiry_ms)
            stored = self._expire_if_due(stored)
            # A refusal is raised after the transaction, so an expiry found here is still committed.
            refusal = self.confirmation_refusal(stored)
            if refusal is None:
                self._conn.execute(
                    "INSERT INTO used_tokens(nonce, proposal_id, used) VALUES (?, ?, ?)",
                    (nonce, stored.id, format_instant(now)),
                )
                stored = self.confirmed(stored, principal, now)
                self._write(stored, insert=False)
        if refusal is not None:
            raise refusal
        return stored

    # -- integrity -----------------------------------------------------------------------------

    def verify(self) -> tuple[int, builtins.list[RowProblem]]:
        """Check every row's MAC and shape without changing anything: (rows checked, problems)."""
        problems: builtins.list[RowProblem] = []
        rows = self._select("ORDER BY id")
        for row in rows:
            try:
                self.check_row(row)
            except StoreError as exc:
                problems.append(RowProblem(str(row[0]), exc.message))
        return len(rows), problems

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ProposalStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_proposals(data_dir: DataDir, *, key: str | None = None, clock: Clock = utcnow) -> ProposalStore:
    """The data directory's proposal store (`proposals.db`, MAC key `keys/proposals.secret`)."""
    data_dir.ensure()
    return ProposalStore(data_dir.path / FILE_NAME, mac_key=data_dir.secret(SECRET_NAME), key=key, clock=clock)
