"""What every proposal store shares, whatever its database: row and token MACs, state transitions and expiry rules.

`ProposalStore` (SQLite, one server) and `PgProposalStore` (PostgreSQL, many workers) both subclass
`ProposalRules`, which holds the domain-separated MAC keys and the clock and decides, without touching
a database, whether a row verifies, what a decision, an outcome or a confirmation turns a proposal into,
and which refusal applies. `Proposals` is the interface callers annotate, so either store can serve them.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from fhirgate.core.policy.principal import Principal
from fhirgate.core.writes.proposal import STATUSES, Proposal, format_instant
from fhirgate.errors import AccessDenied, Conflict, InvalidInput, StoreError

DEFAULT_TTL = timedelta(hours=24)
TOKEN_TTL = timedelta(minutes=10)
MAX_LIST = 1000

TOKEN = re.compile(r"v1\.([A-Za-z0-9\-.]{1,64})\.([0-9a-f]{32})\.(\d{1,15})\.([0-9a-f]{64})")
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_DECIDER = re.compile(r"[^\x00-\x1f\x7f]{1,400}")

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The current time in UTC (the default clock)."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RowProblem:
    """One row that failed verification: the proposal id (or token nonce) and what is wrong."""

    id: str
    problem: str


class Proposals(Protocol):
    """A proposal store as its callers use it: ProposalStore (SQLite) or PgProposalStore (PostgreSQL)."""

    def now(self) -> datetime:
        """The store's clock."""
        ...

    def new_id(self) -> str:
        """A fresh random proposal id."""
        ...

    def deadline(self, ttl: timedelta = DEFAULT_TTL) -> tuple[str, str]:
        """(created, expires) instants for a proposal made now that lives `ttl`."""
        ...

    def create(self, proposal: Proposal) -> tuple[Proposal, bool]:
        """Store a new pending proposal, idempotently per principal and idempotency key."""
        ...

    def get(self, proposal_id: str) -> Proposal:
        """One proposal, verified, expired when due."""
        ...

    def list(self, *, status: str | None = None, principal: str | None = None, limit: int = 100) -> list[Proposal]:
        """Proposals newest first, filtered, each verified."""
        ...

    def decide(self, proposal_id: str, decider: str, approve: bool, reason: str | None = None) -> Proposal:
        """Approve or reject a pending proposal."""
        ...

    def mark_outcome(self, proposal_id: str, status: str, detail: str | None = None) -> Proposal:
        """Record that an approved proposal's write was applied or failed."""
        ...

    def confirmation_token(self, proposal: Proposal, principal: Principal) -> str:
        """A single-use in-chat confirmation token for a low-risk proposal."""
        ...

    def check_confirmation(self, token: str, proposal: Proposal, principal: Principal) -> Proposal:
        """Use a confirmation token once and approve the proposal."""
        ...

    def verify(self) -> tuple[int, builtins.list[RowProblem]]:
        """Check every row's MAC: (rows checked, problems)."""
        ...

    def close(self) -> None:
        """Release the store's resources."""
        ...

    def __enter__(self) -> Proposals:
        """The store itself, closed on leaving the block."""
        ...

    def __exit__(self, *exc: object) -> None:
        """Close the store."""
        ...


def denied(reason: str, message: str) -> AccessDenied:
    """An AccessDenied carrying a machine-readable refusal reason."""
    return AccessDenied(message, reason=reason)


def check_id(proposal_id: object) -> str:
    """The proposal id, or InvalidInput when it is not 1-64 of the FHIR id alphabet."""
    if not isinstance(proposal_id, str) or not _ID.fullmatch(proposal_id):
        raise InvalidInput("id", "not a valid proposal id", "1-64 of A-Z a-z 0-9 - .")
    return proposal_id


def check_new(proposal: object) -> Proposal:
    """The proposal to create, or InvalidInput when it is not a pending Proposal."""
    if not isinstance(proposal, Proposal):
        raise InvalidInput("proposal", "must be a Proposal")
    if proposal.status != "pending":
        raise InvalidInput("proposal.status", "a new proposal must be pending")
    return proposal


def check_list(status: str | None, limit: int) -> None:
    """InvalidInput for an unknown status filter or a limit outside 1..MAX_LIST."""
    if status is not None and status not in STATUSES:
        raise InvalidInput("status", "unknown proposal status", ", ".join(STATUSES))
    if not isinstance(limit, int) or not 1 <= limit <= MAX_LIST:
        raise InvalidInput("limit", "out of range", f"1 to {MAX_LIST}")


def check_decision(decider: object, approve: bool, reason: str | None) -> str:
    """The stripped decider name, or InvalidInput for a missing decider or a rejection without a reason."""
    if not isinstance(decider, str) or not _DECIDER.fullmatch(decider) or not decider.strip():
        raise InvalidInput("decider", "must name who decides", "1-400 printable characters")
    if reason is not None and (not isinstance(reason, str) or not reason.strip()):
        raise InvalidInput("reason", "must be non-empty text when given")
    if not approve and reason is None:
        raise InvalidInput("reason", "a rejection needs a reason")
    return decider.strip()


def same_request(existing: Proposal, proposal: Proposal) -> Proposal:
    """The stored proposal an idempotency key already names, or Conflict when it was for a different request."""
    if existing.request_fingerprint() != proposal.request_fingerprint():
        raise Conflict(
            f"idempotency key already used by proposal {existing.id} for a different request; "
            "use a new key for a new request"
        )
    return existing


def expired_conflict(proposal: Proposal) -> Conflict:
    """The refusal for deciding a proposal whose time is up."""
    return Conflict(f"approval.expired: proposal {proposal.id} expired at {proposal.expires}")


def decision(proposal: Proposal, decider: str, approve: bool, reason: str | None, now: datetime) -> Proposal:
    """The decided proposal, or the refusal: expired, already decided, or a high-risk self-approval."""
    if proposal.status == "expired":
        raise expired_conflict(proposal)
    if proposal.status != "pending":
        raise Conflict(f"approval.decided: proposal {proposal.id} is already {proposal.status}")
    if approve and proposal.high_risk and same_person(decider, proposal):
        raise denied(
            "approval.self_approval",
            f"proposal {proposal.id} is high risk: it must be approved by someone other than its proposer",
        )
    return proposal.decided_as("approved" if approve else "rejected", decider, reason, now)


def check_outcome(status: str, detail: str | None) -> None:
    """InvalidInput unless `status` is a write outcome and `detail`, when given, is text."""
    if status not in ("applied", "failed"):
        raise InvalidInput("status", "not a write outcome", "applied, failed")
    if detail is not None and (not isinstance(detail, str) or not detail.strip()):
        raise InvalidInput("detail", "must be non-empty text when given")


def outcome(proposal: Proposal, status: str, detail: str | None) -> Proposal:
    """The approved proposal marked applied or failed, or Conflict when it is not approved (marked once only)."""
    if proposal.status != "approved":
        raise Conflict(f"proposal {proposal.id} is {proposal.status}, not approved")
    return replace(proposal, status=status, outcome=None if detail is None else detail[:1000])


def same_person(decider: str, proposal: Proposal) -> bool:
    """Whether the decider names the proposer (subject key or bare subject, case-insensitively)."""
    name = decider.casefold()
    return name in (proposal.subject_key.casefold(), proposal.proposer_sub.casefold())


def same_principal(principal: Principal, proposal: Proposal) -> bool:
    """Whether the principal (subject key and client id) is the proposal's proposer."""
    return principal.subject_key == proposal.subject_key and (principal.client_id or None) == proposal.client_id


class ProposalRules:
    """The database-independent half of a proposal store: MAC keys, clock, row checks, ids and tokens."""

    def __init__(self, mac_key: bytes, clock: Clock) -> None:
        if not isinstance(mac_key, bytes) or len(mac_key) < 16:
            raise StoreError("proposal MAC key must be at least 16 bytes")
        # Domain-separated keys: rows and tokens never share a MAC key.
        self._row_key = hmac.new(mac_key, b"fhirgate-proposal-rows", hashlib.sha256).digest()
        self._token_key = hmac.new(mac_key, b"fhirgate-confirmation-tokens", hashlib.sha256).digest()
        self._clock = clock

    def now(self) -> datetime:
        """The store's clock (injectable for tests)."""
        return self._clock()

    def new_id(self) -> str:
        """A fresh random proposal id (`prop-` and 24 hex digits)."""
        return "prop-" + secrets.token_hex(12)

    def deadline(self, ttl: timedelta = DEFAULT_TTL) -> tuple[str, str]:
        """(created, expires) instants for a proposal made now that lives `ttl`."""
        if ttl <= timedelta(0) or ttl > timedelta(days=30):
            raise InvalidInput("ttl", "out of range", "more than 0 and at most 30 days")
        now = self.now()
        return format_instant(now), format_instant(now + ttl)

    def get(self, proposal_id: str) -> Proposal:
        """One proposal, verified; the database-specific subclass reads it."""
        raise NotImplementedError

    # -- rows ------------------------------------------------------------------------------------

    def row_mac(self, proposal_id: str, body: bytes) -> str:
        """HMAC-SHA256 hex over the id and canonical JSON of one row."""
        return hmac.new(
            self._row_key, b"fhirgate-proposal|" + proposal_id.encode() + b"|" + body, hashlib.sha256
        ).hexdigest()

    def row_values(self, proposal: Proposal) -> tuple[str, str, str, str, str, str, str]:
        """(subject_key, idempotency_key, status, created, body, mac, id) of the signed row for `proposal`."""
        body = proposal.to_json()
        return (
            proposal.subject_key,
            proposal.idempotency_key,
            proposal.status,
            proposal.created,
            body.decode(),
            self.row_mac(proposal.id, body),
            proposal.id,
        )

    def check_row(self, row: Sequence[Any]) -> Proposal:
        """The proposal of a row (id, subject_key, idempotency_key, status, created, body, mac), or StoreError
        when its MAC fails, its body is malformed or its indexed columns disagree with the signed body."""
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

    def due(self, proposal: Proposal) -> bool:
        """Whether a pending proposal's time is up now (the store then persists it as expired)."""
        return proposal.status == "pending" and proposal.is_expired(self.now())

    # -- confirmation tokens ---------------------------------------------------------------------

    def token_mac(self, proposal: Proposal, principal: Principal, nonce: str, expiry_ms: int) -> str:
        """The token MAC binding proposal id, content hash, principal, nonce and expiry."""
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
            raise denied("confirmation.wrong_proposal", f"proposal {proposal.id} differs from the stored one")
        if stored.high_risk:
            raise denied("confirmation.high_risk", f"proposal {stored.id} is high risk: it needs approval")
        if not same_principal(principal, stored):
            raise denied("confirmation.wrong_principal", f"only the proposer may confirm proposal {stored.id}")
        if stored.status != "pending":
            raise Conflict(f"proposal {stored.id} is {stored.status}, not pending")
        now = self.now()
        expiry = min(now + TOKEN_TTL, datetime.strptime(stored.expires, "%Y-%m-%dT%H:%M:%S.%f%z"))
        expiry_ms = int(expiry.timestamp() * 1000)
        nonce = secrets.token_hex(16)
        return f"v1.{stored.id}.{nonce}.{expiry_ms}.{self.token_mac(stored, principal, nonce, expiry_ms)}"

    def parse_token(self, token: object, proposal: Proposal) -> tuple[str, int, str]:
        """(nonce, expiry ms, mac) of a well-formed token for `proposal`; malformed or wrong_proposal otherwise."""
        match = TOKEN.fullmatch(token) if isinstance(token, str) else None
        if match is None:
            raise denied("confirmation.malformed", "confirmation token is malformed")
        token_pid, nonce, expiry_text, mac = match.groups()
        if token_pid != proposal.id:
            raise denied("confirmation.wrong_proposal", f"confirmation token is not for proposal {proposal.id}")
        return nonce, int(expiry_text), mac

    def check_token_mac(
        self, stored: Proposal, proposal: Proposal, principal: Principal, nonce: str, expiry_ms: int, mac: str
    ) -> None:
        """Refuse a token whose proposal changed (`wrong_proposal`) or whose MAC fails (`forged`)."""
        if stored.content_hash() != proposal.content_hash():
            raise denied("confirmation.wrong_proposal", f"proposal {proposal.id} differs from the stored one")
        if not hmac.compare_digest(mac, self.token_mac(stored, principal, nonce, expiry_ms)):
            raise denied("confirmation.forged", "confirmation token does not verify for this principal")

    def check_token_expiry(self, now: datetime, expiry_ms: int) -> None:
        """Refuse a token whose expiry has passed (`confirmation.expired`)."""
        if int(now.timestamp() * 1000) >= expiry_ms:
            raise denied("confirmation.expired", "confirmation token expired; ask for a new confirmation")

    @staticmethod
    def confirmation_refusal(stored: Proposal) -> Conflict | AccessDenied | None:
        """Why a (possibly just expired) proposal cannot be confirmed in chat, or None when it can."""
        if stored.status != "pending":
            return Conflict(f"proposal {stored.id} is {stored.status}, not pending")
        if stored.high_risk:
            return denied("confirmation.high_risk", f"proposal {stored.id} is high risk: it needs approval")
        return None

    @staticmethod
    def confirmed(stored: Proposal, principal: Principal, now: datetime) -> Proposal:
        """The proposal approved by its proposer's in-chat confirmation."""
        return stored.decided_as("approved", principal.subject_key, "confirmed in chat", now)
