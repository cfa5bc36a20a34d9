"""The proposal store on PostgreSQL, so that several stateless fhirgate workers share proposals and token nonces.

Same rows, MACs and rules as the SQLite ProposalStore (writes.proposal_rules); the difference is
concurrency across processes. Every change runs in one transaction that first locks the proposal's row
(`SELECT ... FOR UPDATE`), so two workers deciding the same proposal are serialized and the second sees
the first's decision. A confirmation nonce is recorded with `INSERT ... ON CONFLICT DO NOTHING` on a
primary key and used only when that insert took a row: a token spent on one worker is refused on every
other, with no read-then-write window. Creation relies on UNIQUE(subject_key, idempotency_key) the same
way, so racing creates with one idempotency key yield one proposal.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg_pool
from psycopg import sql

from fhirgate.core.policy.principal import Principal
from fhirgate.core.writes.proposal import Proposal, format_instant
from fhirgate.errors import Conflict, FhirgateError, InvalidInput, NotFound, StoreError
from fhirgate.store.postgres.pool import OPEN_ERRORS, open_pool
from fhirgate.store.postgres.schema import SCHEMA_RE
from fhirgate.writes import proposal_rules as rules
from fhirgate.writes.proposal_rules import Clock, ProposalRules, RowProblem, utcnow

Conn = psycopg.Connection[tuple[Any, ...]]

_COLUMNS = "id, subject_key, idempotency_key, status, created, body, mac"
_C = 'TEXT COLLATE "C" NOT NULL'
# Instants are fixed-width UTC text (format_instant), so byte order is time order, as in SQLite.
_TABLES = (
    f"""CREATE TABLE IF NOT EXISTS proposals(
        id {_C} PRIMARY KEY, subject_key {_C}, idempotency_key {_C}, status {_C}, created {_C},
        body {_C}, mac {_C}, UNIQUE (subject_key, idempotency_key))""",
    "CREATE INDEX IF NOT EXISTS proposals_status ON proposals(status, created)",
    f"CREATE TABLE IF NOT EXISTS used_tokens(nonce {_C} PRIMARY KEY, proposal_id {_C}, used {_C})",
)
_DDL_LOCK_SEED = 17


class PgProposalStore(ProposalRules):
    """Signed proposals and single-use confirmation nonces in one PostgreSQL schema, shared by every worker."""

    def __init__(self, url: str, *, schema: str, mac_key: bytes, clock: Clock = utcnow, pool_size: int = 4) -> None:
        """Open a pool on `url` using `schema` (created with its tables when absent)."""
        super().__init__(mac_key, clock)
        if not isinstance(schema, str) or not SCHEMA_RE.match(schema):
            raise InvalidInput("schema", "not a plain lower-case SQL identifier", "[a-z_][a-z0-9_]*, at most 63")
        self.schema = schema
        try:
            self._pool = open_pool(url, schema, name=f"fhirgate-proposals-{schema}", size=pool_size, first=self._create)
        except OPEN_ERRORS as exc:
            raise StoreError(f"cannot open the proposal store (schema {schema}): {type(exc).__name__}") from None

    def _create(self, conn: Conn) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, %s))", (self.schema, _DDL_LOCK_SEED))
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
            conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(self.schema)))
            for statement in _TABLES:
                conn.execute(sql.SQL(statement))  # fixed text of this module, no values

    # -- plumbing ------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[Conn]:
        try:
            with self._pool.connection() as conn, conn.transaction():
                yield conn
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            raise StoreError(f"proposal store (PostgreSQL) failed: {type(exc).__name__}") from None

    def _select(self, conn: Conn, where: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        query = f"SELECT {_COLUMNS} FROM proposals {where}"  # noqa: S608 - `where` is always a literal of this module
        return list(conn.execute(query, params).fetchall())

    def _write(self, conn: Conn, proposal: Proposal) -> None:
        conn.execute(
            "UPDATE proposals SET subject_key=%s, idempotency_key=%s, status=%s, created=%s, body=%s, mac=%s "
            "WHERE id=%s",
            self.row_values(proposal),
        )

    def _locked(self, conn: Conn, proposal_id: str) -> Proposal:
        """Inside a transaction: the verified proposal, its row locked until commit; expired when due."""
        rows = self._select(conn, "WHERE id=%s FOR UPDATE", (rules.check_id(proposal_id),))
        if not rows:
            raise NotFound(f"no proposal {proposal_id}")
        return self._expire_if_due(conn, self.check_row(rows[0]))

    def _expire_if_due(self, conn: Conn, proposal: Proposal) -> Proposal:
        if self.due(proposal):
            proposal = proposal.expired()
            self._write(conn, proposal)
        return proposal

    # -- proposals -----------------------------------------------------------------------------

    def create(self, proposal: Proposal) -> tuple[Proposal, bool]:
        """Store a new pending proposal; (stored, True), or (existing, False) for a repeated idempotency key
        with the same request; Conflict for the key reused for another request or an id already taken."""
        rules.check_new(proposal)
        by_key = "WHERE subject_key=%s AND idempotency_key=%s FOR UPDATE"
        key = (proposal.subject_key, proposal.idempotency_key)
        with self._transaction() as conn:
            inserted = conn.execute(
                "INSERT INTO proposals(subject_key, idempotency_key, status, created, body, mac, id) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                self.row_values(proposal),
            ).rowcount
            if inserted == 1:
                return proposal, True
            # Either the key or the id is taken; after a conflict wait, this statement sees the winner's row.
            rows = self._select(conn, by_key, key)
            if not rows:
                raise Conflict(f"proposal id {proposal.id} already exists")
            existing = self._expire_if_due(conn, self.check_row(rows[0]))
        return rules.same_request(existing, proposal), False

    def get(self, proposal_id: str) -> Proposal:
        """One proposal, verified; a pending one past its expiry is returned (and stored) as expired."""
        with self._transaction() as conn:
            rows = self._select(conn, "WHERE id=%s", (rules.check_id(proposal_id),))
            if not rows:
                raise NotFound(f"no proposal {proposal_id}")
            proposal = self.check_row(rows[0])
            if self.due(proposal):
                proposal = self._locked(conn, proposal_id)
        return proposal

    def list(self, *, status: str | None = None, principal: str | None = None, limit: int = 100) -> list[Proposal]:
        """Proposals newest first, filtered by status and proposer subject key; each row is verified."""
        rules.check_list(status, limit)
        clauses, params = [], []
        if status is not None:
            clauses.append("status=%s")
            params.append(status)
        if principal is not None:
            clauses.append("subject_key=%s")
            params.append(principal)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        with self._transaction() as conn:
            for row in self._select(conn, "WHERE status='pending' ORDER BY id FOR UPDATE"):
                self._expire_if_due(conn, self.check_row(row))
            rows = self._select(conn, f"{where} ORDER BY created DESC, id LIMIT %s", (*params, limit))
            return [self.check_row(r) for r in rows]

    def decide(self, proposal_id: str, decider: str, approve: bool, reason: str | None = None) -> Proposal:
        """Approve or reject a pending proposal as `decider`, under the same rules as ProposalStore.decide.

        The row is locked for the decision, so of two workers deciding at once exactly one decides and the
        other gets Conflict (`approval.decided`); an expiry found here is stored before `approval.expired`.
        """
        decider = rules.check_decision(decider, approve, reason)
        with self._transaction() as conn:
            proposal = self._locked(conn, proposal_id)
            result: Proposal | FhirgateError
            if proposal.status == "expired":
                result = rules.expired_conflict(proposal)  # raised after commit, so the expiry is stored
            else:
                result = rules.decision(proposal, decider, approve, reason, self.now())
                self._write(conn, result)
        if isinstance(result, FhirgateError):
            raise result
        return result

    def mark_outcome(self, proposal_id: str, status: str, detail: str | None = None) -> Proposal:
        """Record what became of an approved proposal's write (`applied` or `failed`), once only."""
        rules.check_outcome(status, detail)
        with self._transaction() as conn:
            rows = self._select(conn, "WHERE id=%s FOR UPDATE", (rules.check_id(proposal_id),))
            if not rows:
                raise NotFound(f"no proposal {proposal_id}")
            done = rules.outcome(self.check_row(rows[0]), status, detail)
            self._write(conn, done)
        return done

    # -- confirmation tokens -------------------------------------------------------------------

    def check_confirmation(self, token: str, proposal: Proposal, principal: Principal) -> Proposal:
        """Check a confirmation token and, in one transaction, spend its nonce and approve the proposal.

        Refusals as ProposalStore.check_confirmation. The nonce is spent by an INSERT that either takes the
        primary key or does nothing; a token already spent, here or on another worker, is `confirmation.replayed`.
        """
        nonce, expiry_ms, mac = self.parse_token(token, proposal)
        with self._transaction() as conn:
            rows = self._select(conn, "WHERE id=%s FOR UPDATE", (proposal.id,))
            if not rows:
                raise NotFound(f"no proposal {proposal.id}")
            stored = self.check_row(rows[0])
            self.check_token_mac(stored, proposal, principal, nonce, expiry_ms, mac)
            now = self.now()
            spent = conn.execute(
                "INSERT INTO used_tokens(nonce, proposal_id, used) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                (nonce, stored.id, format_instant(now)),
            ).rowcount
            if spent != 1:
                raise rules.denied("confirmation.replayed", "confirmation token was already used")
            self.check_token_expiry(now, expiry_ms)
            stored = self._expire_if_due(conn, stored)
            refusal = self.confirmation_refusal(stored)
            if refusal is None:
                stored = self.confirmed(stored, principal, now)
                self._write(conn, stored)
            else:
                # As in SQLite, a token is spent only by a confirmation; the expiry found here is still stored.
                conn.execute("DELETE FROM used_tokens WHERE nonce=%s", (nonce,))
        if refusal is not None:
            raise refusal
        return stored

    # -- integrity -----------------------------------------------------------------------------

    def verify(self) -> tuple[int, builtins.list[RowProblem]]:
        """Check every row's MAC and shape without changing anything: (rows checked, problems)."""
        with self._transaction() as conn:
            rows = self._select(conn, "ORDER BY id")
        problems: builtins.list[RowProblem] = []
        for row in rows:
            try:
                self.check_row(row)
            except StoreError as exc:
                problems.append(RowProblem(str(row[0]), exc.message))
        return len(rows), problems

    def close(self) -> None:
        """Close the connection pool."""
        self._pool.close()

    def __enter__(self) -> PgProposalStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_pg_proposals(url: str, schema: str, mac_key: bytes, *, clock: Clock = utcnow) -> PgProposalStore:
    """The proposal store in PostgreSQL schema `schema` at `url`, rows signed with `mac_key`."""
    return PgProposalStore(url, schema=schema, mac_key=mac_key, clock=clock)
