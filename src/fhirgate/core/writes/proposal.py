"""A write proposal: one create, update or delete that waits for confirmation or approval before it is written.

A proposal is immutable; a decision makes a new value (`decided`). Its canonical JSON (sorted keys, no
whitespace) is what the proposal store signs, and `content_hash` covers only what the write would do
(never status or decision), so a confirmation token stays bound to exactly the change that was shown.
Pure: ids and clocks are supplied by the caller.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from fhirgate.errors import InvalidInput

KINDS: tuple[str, ...] = ("create", "update", "delete")
STATUSES: tuple[str, ...] = ("pending", "approved", "rejected", "expired", "applied", "failed")
# Statuses a proposal can never leave.
FINAL_STATUSES: frozenset[str] = frozenset({"rejected", "expired", "applied", "failed"})
RISK_LEVELS: tuple[str, ...] = ("low", "high")

# FHIR R4 §2.24.0.1 id: [A-Za-z0-9\-\.]{1,64}; proposal ids use the same alphabet.
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}")
# FHIR R4 instant (§2.24.0.1), restricted here to UTC with milliseconds (as in audit records).
_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
_CODE = re.compile(r"[a-z][a-z0-9_.\-]{0,79}")
_MAX_TEXT = 1000
_MAX_KEY = 200
# Elements of `resource`/`current` that the server manages (FHIR R4 §3.1.0.5: meta.versionId and lastUpdated
# are set by the server on create/update); they are not part of what a proposal asks to write.
_SERVER_META = ("versionId", "lastUpdated")


def format_instant(moment: datetime) -> str:
    """A datetime as a UTC FHIR instant with millisecond precision; naive datetimes are taken as UTC."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    utc = aware.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_instant(text: str) -> datetime:
    """The datetime of an instant written by `format_instant`; InvalidInput for anything else."""
    if not isinstance(text, str) or not _INSTANT.fullmatch(text):
        raise InvalidInput("instant", "not a UTC FHIR instant", "YYYY-MM-DDThh:mm:ss.sssZ")
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")


def canonical_json(value: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no whitespace, UTF-8 (what MACs and hashes cover)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        raise InvalidInput("resource", "is not JSON-serializable", "JSON objects, arrays, strings, numbers") from None


def _text(param: str, value: object, *, required: bool, limit: int = _MAX_TEXT) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise InvalidInput(param, "must be a non-empty string", f"at most {limit} characters")
    if any(ord(ch) < 32 and ch not in "\t" for ch in value):
        raise InvalidInput(param, "contains control characters")


@dataclass(frozen=True, slots=True)
class Proposal:
    """One proposed write and its state.

    `resource` is the resource to write (None for a delete); `current` the stored version it was proposed
    against (None for a create), kept so the approver sees the very diff that was scored. `base_version`
    is that version's meta.versionId: the write must be refused when the stored version differs (FHIR R4
    §3.1.0.5.3 version-aware update, If-Match). `subject_key`/`client_id` name the proposing principal;
    `risk`/`risk_reasons` the assessment made when proposing (core.writes.risk).
    """

    id: str
    kind: str
    resource_type: str
    target_id: str
    resource: dict[str, Any] | None
    current: dict[str, Any] | None
    base_version: str | None
    subject_key: str
    client_id: str | None
    purpose: str | None
    idempotency_key: str
    created: str
    expires: str
    risk: str
    risk_reasons: tuple[str, ...]
    status: str = "pending"
    decider: str | None = None
    decision_reason: str | None = None
    decided: str | None = None
    # What became of the write once approved: "Type/id version N" when applied, why when it failed (ids only).
    outcome: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _ID.fullmatch(self.id):
            raise InvalidInput("id", "not a valid proposal id", "1-64 of A-Z a-z 0-9 - .")
        if self.kind not in KINDS:
            raise InvalidInput("kind", "unknown write kind", ", ".join(KINDS))
        if not isinstance(self.resource_type, str) or not _TYPE.fullmatch(self.resource_type):
            raise InvalidInput("resource_type", "not a resource type name")
        if not isinstance(self.target_id, str) or not _ID.fullmatch(self.target_id):
            raise InvalidInput("target_id", "not a FHIR id", "1-64 of A-Z a-z 0-9 - .")
        self._check_bodies()
        _text("subject_key", self.subject_key, required=True, limit=_MAX_KEY * 2)
        _text("client_id", self.client_id, required=False, limit=_MAX_KEY)
        _text("purpose", self.purpose, required=False, limit=_MAX_KEY)
        _text("idempotency_key", self.idempotency_key, required=True, limit=_MAX_KEY)
        for name in ("created", "expires"):
            parse_instant(getattr(self, name))
        if self.expires <= self.created:
            raise InvalidInput("expires", "must be after created")
        if self.risk not in RISK_LEVELS:
            raise InvalidInput("risk", "unknown risk level", ", ".join(RISK_LEVELS))
        if not isinstance(self.risk_reasons, tuple) or not all(
            isinstance(r, str) and _CODE.fullmatch(r) for r in self.risk_reasons
        ):
            raise InvalidInput("risk_reasons", "must be a tuple of reason codes")
        self._check_state()

    def _check_bodies(self) -> None:
        if self.kind == "delete":
            if self.resource is not None:
                raise InvalidInput("resource", "must be absent for a delete")
        elif not isinstance(self.resource, dict):
            raise InvalidInput("resource", f"is required for a {self.kind}", "a FHIR resource as a JSON object")
        else:
            if self.resource.get("resourceType") != self.resource_type:
                raise InvalidInput("resource.resourceType", "does not match resource_type")
            if self.resource.get("id") != self.target_id:
                raise InvalidInput("resource.id", "does not match target_id")
        if self.kind == "create":
            if self.current is not None or self.base_version is not None:
                raise InvalidInput("current/base_version", "must be absent for a create")
            return
        if not isinstance(self.current, dict):
            raise InvalidInput("current", f"the stored resource is required for a {self.kind}")
        if self.current.get("resourceType") != self.resource_type or self.current.get("id") != self.target_id:
            raise InvalidInput("current", "is not the target resource")
        if not isinstance(self.base_version, str) or not _ID.fullmatch(self.base_version):
            raise InvalidInput("base_version", f"the meta.versionId read is required for a {self.kind}")
        meta = self.current.get("meta")
        if not isinstance(meta, dict) or meta.get("versionId") != self.base_version:
            raise InvalidInput("base_version", "does not match current.meta.versionId")

    def _check_state(self) -> None:
        if self.status not in STATUSES:
            raise InvalidInput("status", "unknown proposal status", ", ".join(STATUSES))
        _text("decider", self.decider, required=False, limit=_MAX_KEY * 2)
        _text("decision_reason", self.decision_reason, required=False)
        if self.decided is not None:
            parse_instant(self.decided)
        undecided = self.status in ("pending", "expired")
        if undecided and self.decider is not None:
            raise InvalidInput("decider", f"must be absent while {self.status}")
        if not undecided and (self.decider is None or self.decided is None):
            raise InvalidInput("decider", f"is required once {self.status}")
        _text("outcome", self.outcome, required=False)
        if self.outcome is not None and self.status not in ("applied", "failed"):
            raise InvalidInput("outcome", f"must be absent while {self.status}")

    # -- forms ---------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The proposal as plain JSON values (tuples as lists)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def to_json(self) -> bytes:
        """Canonical JSON of the whole proposal, state included: the bytes the proposal store signs."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Proposal:
        """Rebuild a proposal from `to_dict` output; InvalidInput when it is not one."""
        if not isinstance(raw, Mapping):
            raise InvalidInput("proposal", "must be a JSON object")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise InvalidInput("proposal", f"unknown members: {', '.join(unknown[:5])}")
        data = dict(raw)
        reasons = data.get("risk_reasons")
        data["risk_reasons"] = tuple(reasons) if isinstance(reasons, list) else reasons
        try:
            return cls(**data)
        except TypeError:
            raise InvalidInput("proposal", "required members are missing") from None

    @classmethod
    def from_json(cls, data: str | bytes) -> Proposal:
        """Parse canonical JSON written by `to_json`."""
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise InvalidInput("proposal", "is not valid JSON") from None
        return cls.from_dict(raw)

    # -- hashes --------------------------------------------------------------------------------

    def content(self) -> dict[str, Any]:
        """What the write would do and who asked, without state: the part a confirmation is bound to."""
        return {
            "id": self.id,
            "kind": self.kind,
            "resource_type": self.resource_type,
            "target_id": self.target_id,
            "resource": self.resource,
            "base_version": self.base_version,
            "subject_key": self.subject_key,
            "client_id": self.client_id,
            "purpose": self.purpose,
            "expires": self.expires,
            "risk": self.risk,
        }

    def content_hash(self) -> str:
        """SHA-256 hex of the canonical JSON of `content()`."""
        return hashlib.sha256(canonical_json(self.content())).hexdigest()

    def request_fingerprint(self) -> str:
        """SHA-256 hex of what the caller asked for, ignoring server-assigned id, instants and, for a create,
        the new resource id; two requests with one idempotency key must have the same fingerprint."""
        resource = dict(self.resource) if self.resource is not None else None
        if resource is not None:
            meta = resource.get("meta")
            if isinstance(meta, dict):
                resource["meta"] = {k: v for k, v in meta.items() if k not in _SERVER_META}
            if self.kind == "create":
                resource.pop("id", None)
        request = {
            "kind": self.kind,
            "resource_type": self.resource_type,
            "target_id": None if self.kind == "create" else self.target_id,
            "resource": resource,
            "base_version": self.base_version,
            "client_id": self.client_id,
            "purpose": self.purpose,
        }
        return hashlib.sha256(canonical_json(request)).hexdigest()

    # -- state ---------------------------------------------------------------------------------

    @property
    def high_risk(self) -> bool:
        return self.risk == "high"

    @property
    def proposer_sub(self) -> str:
        """The subject part of `subject_key` (`issuer#sub`), for comparing with a decider's name."""
        return self.subject_key.rsplit("#", 1)[-1]

    def is_expired(self, now: datetime) -> bool:
        """Whether the proposal's time is up at `now` (the expiry instant itself counts as expired)."""
        return format_instant(now) >= self.expires

    def decided_as(self, status: str, decider: str, reason: str | None, now: datetime) -> Proposal:
        """A copy with a decision recorded (approved, rejected, applied, failed)."""
        return replace(self, status=status, decider=decider, decision_reason=reason, decided=format_instant(now))

    def expired(self) -> Proposal:
        """A copy in status `expired`."""
        return replace(self, status="expired")
