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
import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import apsw

from fhirgate.config import DataDir
from fhirgate.core.policy.principal import Principal
from fhirgate.core.writes.proposal import STATUSES, Proposal, format_instant
from fhirgate.database import open_sqlite
from fhirgate.errors import AccessDenied, Conflict, FhirgateError, InvalidInput, NotFound, StoreError

FILE_NAME = "proposals.db"
SECRET_NAME = "proposals"  # noqa: S105 - the name of the key file in keys/, not a secret
DEFAULT_TTL = timedelta(hours=24)
TOKEN_TTL = timedelta(minutes=10)
MAX_LIST = 1000

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
_TOKEN = re.compile(r"v1\.([A-Za-z0-9\-.]{1,64})\.([0-9a-f]{32})\.(\d{1,15})\.([0-9a-f]{64})")
_DECIDER = re.compile(r"[^\x00-\x1f\x7f]{1,400}")

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RowProblem:
    """One row that failed verification: the proposal id (or token nonce) and what is wrong."""

    id: str
    problem: str


def _denied(reason: str, message: str) -> AccessDenied:
    return AccessDenied(message, reason=reason)


class ProposalStore:
    """Signed proposals and single-use confirmation tokens in their own (optionally encrypted) SQLite database."""

    def __init__(self, path: Path, *, mac_key: bytes, key: str | None = None, clock: Clock = _utcnow) -> None:
        if not isinstance(mac_key, bytes) or len(mac_key) < 16:
            raise StoreError("proposal MAC key must be at least 16 bytes")
        self.path = Path(path)
        # Domain-separated keys: rows and tokens never share a MAC key.
        self._row_key = hmac.new(mac_key, b"fhirgate-proposal-rows", hashlib.sha256).digest()
        self._token_key = hmac.new(mac_key, b"fhirgate-confirmation-tokens", hashlib.sha256).digest()
        self._clock = clock
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

    def now(self) -> datetime:
        """The store's clock (injectable for tests)."""
        return self._clock()

    def row_mac(self, proposal_id: str, body: bytes) -> str:
        """HMAC-SHA256 hex over the id and canonical JSON of one row."""
        return hmac.new(
            self._row_key, b"fhirgate-proposal|" + proposal_id.encode() + b"|" + body, hashlib.sha256
        ).hexdigest()

    def _check_row(self, row: tuple[Any, ...]) -> Proposal:
        pid, subject_key, idem, status, created, body, mac = (str(v) for v in row)
        if not hmac.compare_digest(mac, self.row_mac(pid, body.encode())):
            raise StoreError(
                f"proposal {pid} failed its integrity check (edited or forged); run `fhirgate approvals verify`"
            )
        try:
            proposal = Proposal.from_json(body)
        except InvalidInput:
            raise StoreError(f"proposal {pid} is malformed; run `fhirgate approvals verify`") from None
        if (proposal.id, proposal.subject_key, proposal.idempotency_key, proposal.status, proposal.created) != (
            pid,
            subject_key,
            idem,
            status,
            created,
        ):
            raise StoreError(f"proposal {pid} columns disagree with its signed body; run `fhirgate approvals verify`")
        return proposal

    def _select(self, where: str = "", params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        sql = f"SELECT id, subject_key, idempotency_key, status, created, body, mac FROM proposals {where}"  # noqa: S608 - `where` is always a literal of this module
        try:
            with self._lock:
                return [tuple(r) for r in self._conn.execute(sql, params).fetchall()]
        except apsw.Error as exc:
            raise StoreError(f"{FILE_NAME} read failed: {type(exc).__name__}") from None

    def _write(self, proposal: Proposal, *, insert: bool) -> None:
        body = proposal.to_json()
        values = (
            proposal.subject_key,
            proposal.idempotency_key,
            proposal.status,
            proposal.created,
            body.decode(),
            self.row_mac(proposal.id, body),
            proposal.id,
        )
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
        if not isinstance(proposal_id, str) or not re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", proposal_id):
            raise InvalidInput("id", "not a valid proposal id", "1-64 of A-Z a-z 0-9 - .")
        rows = self._select("WHERE id=?", (proposal_id,))
        if not rows:
            raise NotFound(f"no proposal {proposal_id}")
        return self._check_row(rows[0])

    def _expire_if_due(self, proposal: Proposal) -> Proposal:
        """Inside a transaction: a pending proposal past its expiry becomes `expired` (signed, persisted)."""
        if proposal.status == "pending" and proposal.is_expired(self.now()):
            proposal = proposal.expired()
            self._write(proposal, insert=False)
        return proposal

    # -- proposals -----------------------------------------------------------------------------

    def new_id(self) -> str:
        """A fresh random proposal id (`prop-` and 24 hex digits)."""
        return "prop-" + secrets.token_hex(12)

    def deadline(self, ttl: timedelta = DEFAULT_TTL) -> tuple[str, str]:
        """(created, expires) instants for a proposal made now that lives `ttl`."""
        if ttl <= timedelta(0) or ttl > timedelta(days=30):
            raise InvalidInput("ttl", "out of range", "more than 0 and at most 30 days")
        now = self.now()
        return format_instant(now), format_instant(now + ttl)

    def create(self, proposal: Proposal) -> tuple[Proposal, bool]:
        """Store a new pending proposal; (stored proposal, True), or (existing, False) when the principal already
        used this idempotency key for the same request. Conflict when the key was used for a different request."""
        if not isinstance(proposal, Proposal):
            raise InvalidInput("proposal", "must be a Proposal")
        if proposal.status != "pending":
            raise InvalidInput("proposal.status", "a new proposal must be pending")
        with self._transaction():
            rows = self._select(
                "WHERE subject_key=? AND idempotency_key=?", (proposal.subject_key, proposal.idempotency_key)
            )
            if rows:
                existing = self._expire_if_due(self._check_row(rows[0]))
                if existing.request_fingerprint() != proposal.request_fingerprint():
                    raise Conflict(
                        f"idempotency key already used by proposal {existing.id} for a different request; "
                        "use a new key for a new request"
                    )
                return existing, False
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
        if status is not None and status not in STATUSES:
            raise InvalidInput("status", "unknown proposal status", ", ".join(STATUSES))
        if not isinstance(limit, int) or not 1 <= limit <= MAX_LIST:
            raise InvalidInput("limit", "out of range", f"1 to {MAX_LIST}")
        with self._transaction():
            for row in self._select("WHERE status='pending'"):
                self._expire_if_due(self._check_row(row))
            clauses, params = [], []
            if status is not None:
                clauses.append("status=?")
                params.append(status)
            if principal is not None:
                clauses.append("subject_key=?")
                params.append(principal)
            where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
            rows = self._select(f"{where} ORDER BY created DESC, id LIMIT ?", (*params, limit))
            return [self._check_row(r) for r in rows]

    def decide(self, proposal_id: str, decider: str, approve: bool, reason: str | None = None) -> Proposal:
        """Approve or reject a pending proposal as `decider`.

        Refused (AccessDenied, reason `approval.self_approval`) when the decider is the proposer of a high-risk
        proposal (its subject key or its bare subject); the proposer may still reject (withdraw) it. Refused
        (Conflict) when the proposal expired (`approval.expired`) or was already decided (`approval.decided`).
        A rejection needs a reason.
        """
        if not isinstance(decider, str) or not _DECIDER.fullmatch(decider) or not decider.strip():
            raise InvalidInput("decider", "must name who decides", "1-400 printable characters")
        decider = decider.strip()
        if reason is not None and (not isinstance(reason, str) or not reason.strip()):
            raise InvalidInput("reason", "must be non-empty text when given")
        if not approve and reason is None:
            raise InvalidInput("reason", "a rejection needs a reason")
        with self._transaction():
            proposal = self._expire_if_due(self._load(proposal_id))
        if proposal.status == "expired":  # raised outside the transaction, so the expiry found here is stored
            raise Conflict(f"approval.expired: proposal {proposal.id} expired at {proposal.expires}")
        with self._transaction():
            proposal = self._expire_if_due(self._load(proposal_id))
            if proposal.status == "expired":
                raise Conflict(f"approval.expired: proposal {proposal.id} expired at {proposal.expires}")
            if proposal.status != "pending":
                raise Conflict(f"approval.decided: proposal {proposal.id} is already {proposal.status}")
            if approve and proposal.high_risk and _same_person(decider, proposal):
                raise _denied(
                    "approval.self_approval",
                    f"proposal {proposal.id} is high risk: it must be approved by someone other than its proposer",
                )
            decided = proposal.decided_as("approved" if approve else "rejected", decider, reason, self.now())
            self._write(decided, insert=False)
        return decided

    def mark_outcome(self, proposal_id: str, status: str, detail: str | None = None) -> Proposal:
        """Record what became of an approved proposal's write: `applied`, or `failed` with why (ids only).

        Only an approved proposal can be marked, once (Conflict otherwise), so a write is never recorded
        twice; the decider, reason and time stay those of the approval, `detail` becomes `outcome`.
        """
        if status not in ("applied", "failed"):
            raise InvalidInput("status", "not a write outcome", "applied, failed")
        if detail is not None and (not isinstance(detail, str) or not detail.strip()):
            raise InvalidInput("detail", "must be non-empty text when given")
        with self._transaction():
            proposal = self._load(proposal_id)
            if proposal.status != "approved":
                raise Conflict(f"proposal {proposal.id} is {proposal.status}, not approved")
            done = replace(proposal, status=status, outcome=None if detail is None else detail[:1000])
            self._write(done, insert=False)
        return done

    # -- confirmation tokens -------------------------------------------------------------------

    def _token_mac(self, proposal: Proposal, principal: Principal, nonce: str, expiry_ms: int) -> str:
        parts = (
            b"v1",
            proposal.id.encode(),
            proposal.content_hash().encode(),
            principal.subject_key.encode(),
            (principal.client_id or "").encode(),
            nonce.encode(),
            str(expiry_ms).encode(),
        )
        # Length-prefixed parts: no field can run into the next.
        msg = b"".join(len(p).to_bytes(4, "big") + p for p in parts)
        return hmac.new(self._token_key, msg, hashlib.sha256).hexdigest()

    def confirmation_token(self, proposal: Proposal, principal: Principal) -> str:
        """A single-use token the proposing principal returns to confirm a pending LOW-risk proposal in the chat.

        Refused for high-risk proposals (`confirmation.high_risk`: those need another human's approval), for
        another principal (`confirmation.wrong_principal`) and for a proposal no longer pending.
        """
        stored = self.get(proposal.id)
        if stored.content_hash() != proposal.content_hash():
            raise _denied("confirmation.wrong_proposal", f"proposal {proposal.id} differs from the stored one")
        if stored.high_risk:
            raise _denied("confirmation.high_risk", f"proposal {stored.id} is high risk: it needs approval")
        if not _same_principal(principal, stored):
            raise _denied("confirmation.wrong_principal", f"only the proposer may confirm proposal {stored.id}")
        if stored.status != "pending":
            raise Conflict(f"proposal {stored.id} is {stored.status}, not pending")
        now = self.now()
        expiry = min(now + TOKEN_TTL, datetime.strptime(stored.expires, "%Y-%m-%dT%H:%M:%S.%f%z"))
        expiry_ms = int(expiry.timestamp() * 1000)
        nonce = secrets.token_hex(16)
        return f"v1.{stored.id}.{nonce}.{expiry_ms}.{self._token_mac(stored, principal, nonce, expiry_ms)}"

    def check_confirmation(self, token: str, proposal: Proposal, principal: Principal) -> Proposal:
        """Check a confirmation token and, in one transaction, mark it used and approve the proposal.

        Refusals (AccessDenied with these reasons): `confirmation.malformed`, `confirmation.wrong_proposal`
        (token for another proposal, or the proposal changed), `confirmation.forged` (MAC mismatch, which
        includes another principal's token), `confirmation.expired`, `confirmation.replayed`; a proposal no
        longer pending is a Conflict. Returns the approved proposal (decider = the principal's subject key).
        """
        match = _TOKEN.fullmatch(token) if isinstance(token, str) else None
        if match is None:
            raise _denied("confirmation.malformed", "confirmation token is malformed")
        token_pid, nonce, expiry_text, mac = match.groups()
        if token_pid != proposal.id:
            raise _denied("confirmation.wrong_proposal", f"confirmation token is not for proposal {proposal.id}")
        expiry_ms = int(expiry_text)
        with self._transaction():
            stored = self._load(proposal.id)
            if stored.content_hash() != proposal.content_hash():
                raise _denied("confirmation.wrong_proposal", f"proposal {proposal.id} differs from the stored one")
            if not hmac.compare_digest(mac, self._token_mac(stored, principal, nonce, expiry_ms)):
                raise _denied("confirmation.forged", "confirmation token does not verify for this principal")
            used = self._conn.execute("SELECT 1 FROM used_tokens WHERE nonce=?", (nonce,)).fetchone()
            if used is not None:
                raise _denied("confirmation.replayed", "confirmation token was already used")
            now = self.now()
            if int(now.timestamp() * 1000) >= expiry_ms:
                raise _denied("confirmation.expired", "confirmation token expired; ask for a new confirmation")
            stored = self._expire_if_due(stored)
            outcome: Proposal | FhirgateError
            if stored.status != "pending":
                # Not raised inside the transaction, so an expiry found here is still committed.
                outcome = Conflict(f"proposal {stored.id} is {stored.status}, not pending")
            elif stored.high_risk:
                outcome = _denied("confirmation.high_risk", f"proposal {stored.id} is high risk: it needs approval")
            else:
                self._conn.execute(
                    "INSERT INTO used_tokens(nonce, proposal_id, used) VALUES (?, ?, ?)",
                    (nonce, stored.id, format_instant(now)),
                )
                outcome = stored.decided_as("approved", principal.subject_key, "confirmed in chat", now)
                self._write(outcome, insert=False)
        if isinstance(outcome, FhirgateError):
            raise outcome
        return outcome

    # -- integrity -----------------------------------------------------------------------------

    def verify(self) -> tuple[int, builtins.list[RowProblem]]:
        """Check every row's MAC and shape without changing anything: (rows checked, problems)."""
        problems: builtins.list[RowProblem] = []
        rows = self._select("ORDER BY id")
        for row in rows:
            try:
                self._check_row(row)
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


def _same_person(decider: str, proposal: Proposal) -> bool:
    name = decider.casefold()
    return name in (proposal.subject_key.casefold(), proposal.proposer_sub.casefold())


def _same_principal(principal: Principal, proposal: Proposal) -> bool:
    return principal.subject_key == proposal.subject_key and (principal.client_id or None) == proposal.client_id


def open_proposals(data_dir: DataDir, *, key: str | None = None, clock: Clock = _utcnow) -> ProposalStore:
    """The data directory's proposal store (`proposals.db`, MAC key `keys/proposals.secret`)."""
    data_dir.ensure()
    return ProposalStore(data_dir.path / FILE_NAME, mac_key=data_dir.secret(SECRET_NAME), key=key, clock=clock)
