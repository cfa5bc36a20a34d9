"""One audit record: who asked what, through which door, touching which patients, with what outcome.

A record is what the audit log chains and what BALP export turns into an AuditEvent. It holds no PHI
taken from the request: tool arguments may carry names or birth dates, so only their SHA-256 digest
is kept (`args_digest`), and `query` keeps search parameter names with every value replaced by `*`.
Ids of patients and resources touched are kept, as HIPAA 45 CFR 164.312(b) audit controls and the
164.528 accounting of disclosures need them.

Safe writes (docs/writes.md) add BALP kinds create, update and delete (FHIR RESTful interactions on a
resource) and operation (a proposal, an approval or a rejection: no resource written), and two fields:
`proposal`, the proposal id the record belongs to, and `decider`, who approved, rejected or confirmed it
(a subject key `issuer#sub`, or the name an operator typed at the CLI).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import orjson

from fhirgate.core.policy.principal import Principal
from fhirgate.errors import AuditError, InvalidInput

TRANSPORTS: frozenset[str] = frozenset({"http", "stdio", "cli", "in-memory"})
OUTCOMES: frozenset[str] = frozenset({"success", "denied", "not-found", "invalid", "error"})
# "operation": a proposal, an approval or a rejection (FHIR restful-interaction#operation), not a RESTful
# create/update/delete of a resource.
# "vread" and "history": FHIR R4 §3.1.0.3 vread and §3.1.0.4 history-instance of the REST API (fhirapi).
BALP_KINDS: frozenset[str] = frozenset({"read", "vread", "history", "query", "create", "update", "delete", "operation"})

# FHIR R4 instant (§2.24.0.1 Primitive Types), restricted here to UTC with milliseconds.
_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
# A search parameter name with an optional modifier or chain (FHIR R4 §3.1.1.4); anything else is
# replaced, since a caller could smuggle a value (a name, a date) into a parameter's name.
_PARAM_NAME = re.compile(r"_?[A-Za-z][A-Za-z0-9_\-.]{0,63}(:[A-Za-z][A-Za-z0-9\-.]{0,63})?")
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}")
_TUPLE_FIELDS = ("scopes", "purpose_of_use", "patients", "references")
_GOVERNANCE_FIELDS = frozenset({"role", "purpose", "break_glass"})
_WRITE_FIELDS = ("proposal", "decider")
# Fields added after the first records were chained: left out of the canonical JSON when unset (None or
# False), so every record written before them keeps its exact bytes and hash.
_OMITTED_WHEN_UNSET = _GOVERNANCE_FIELDS | frozenset(_WRITE_FIELDS)
_LABEL_LIMIT = 400
# C0 and C1 control characters, DEL and the Unicode line separators: a label stays one printable line, so
# it cannot forge lines in a log or an export.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def instant_now() -> str:
    """The current time as a FHIR instant in UTC with millisecond precision."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def digest_arguments(arguments: Mapping[str, Any] | None) -> str:
    """SHA-256 hex of the canonical JSON (sorted keys) of request arguments; the arguments are not kept."""
    payload = orjson.dumps(dict(arguments or {}), option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)
    return hashlib.sha256(payload).hexdigest()


def clean_query(resource_type: str | None, params: Iterable[str] | Mapping[str, Any] | None) -> str | None:
    """A FHIR-style query with parameter names only (`Patient?birthdate=*&name=*`): values may be PHI.

    Names are sorted and de-duplicated; a name that is not shaped like a search parameter becomes
    `_invalid`, and a resource type that is not shaped like one becomes `_`.
    """
    if resource_type is None and not params:
        return None
    rtype = resource_type if resource_type and _RESOURCE_TYPE.fullmatch(resource_type) else None
    names = sorted({n if _PARAM_NAME.fullmatch(n) else "_invalid" for n in (params or ()) if isinstance(n, str)})
    base = rtype if rtype is not None else ("_" if resource_type else "")
    if not names:
        return base or None
    return f"{base}?" + "&".join(f"{n}=*" for n in names)


def _check_label(name: str, value: object) -> None:
    """A short free-text label (proposal id, decider): None, or 1-400 characters without control characters."""
    if value is None:
        return
    if not isinstance(value, str) or not value or len(value) > _LABEL_LIMIT or _CONTROL.search(value):
        raise InvalidInput(name, "must be 1-400 characters without control characters")


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audited request; `to_json` is the canonical form that the hash chain covers."""

    time: str
    request_id: str
    transport: str
    method: str
    name: str | None
    sub: str | None
    issuer: str | None
    client_id: str | None
    fhir_user: str | None
    scopes: tuple[str, ...]
    purpose_of_use: tuple[str, ...]
    patient_context: str | None
    args_digest: str
    query: str | None
    interaction: str
    balp_kind: str
    patients: tuple[str, ...]
    references: tuple[str, ...]
    outcome: str
    reason: str | None
    latency_ms: float
    client_address: str | None = None
    # Governance (policy file): the role and purpose the request ran under, and whether break-glass was
    # active. Left out of the canonical JSON when unset, so records written before them hash the same.
    role: str | None = None
    purpose: str | None = None
    break_glass: bool = False
    # Safe writes: the proposal id, and who decided on it. Left out of the canonical JSON when unset.
    proposal: str | None = None
    decider: str | None = None

    def __post_init__(self) -> None:
        if not _INSTANT.fullmatch(self.time):
            raise InvalidInput("time", "not a UTC FHIR instant", "YYYY-MM-DDThh:mm:ss.sssZ")
        if self.transport not in TRANSPORTS:
            raise InvalidInput("transport", "unknown transport", ", ".join(sorted(TRANSPORTS)))
        if self.outcome not in OUTCOMES:
            raise InvalidInput("outcome", "unknown outcome", ", ".join(sorted(OUTCOMES)))
        if self.balp_kind not in BALP_KINDS:
            raise InvalidInput("balp_kind", "unknown BALP kind", ", ".join(sorted(BALP_KINDS)))
        if not re.fullmatch(r"[0-9a-f]{64}", self.args_digest):
            raise InvalidInput("args_digest", "not a SHA-256 hex digest", "64 lowercase hex characters")
        if not self.request_id or not self.method or not self.interaction:
            raise InvalidInput("request_id/method/interaction", "must not be empty")
        for name in _TUPLE_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
                raise InvalidInput(name, "must be a tuple of strings")
        for name in _WRITE_FIELDS:
            _check_label(name, getattr(self, name))

    @classmethod
    def new(
        cls,
        *,
        request_id: str,
        transport: str,
        method: str,
        interaction: str,
        balp_kind: str,
        outcome: str,
        principal: Principal | None = None,
        name: str | None = None,
        arguments: Mapping[str, Any] | None = None,
        resource_type: str | None = None,
        query_params: Iterable[str] | Mapping[str, Any] | None = None,
        patients: Iterable[str] = (),
        references: Iterable[str] = (),
        reason: str | None = None,
        latency_ms: float = 0.0,
        client_address: str | None = None,
        time: str | None = None,
        role: str | None = None,
        purpose: str | None = None,
        break_glass: bool = False,
        proposal: str | None = None,
        decider: str | None = None,
    ) -> AuditRecord:
        """Build a record from a request: arguments are digested, query values dropped, ids de-duplicated."""
        return cls(
            time=time or instant_now(),
            request_id=request_id,
            transport=transport,
            method=method,
            name=name,
            sub=principal.sub if principal else None,
            issuer=principal.issuer if principal else None,
            client_id=principal.client_id if principal else None,
            fhir_user=principal.fhir_user if principal else None,
            scopes=tuple(principal.scopes.tokens) if principal else (),
            purpose_of_use=tuple(principal.purpose_of_use) if principal else (),
            patient_context=principal.patient if principal else None,
            args_digest=digest_arguments(arguments),
            query=clean_query(resource_type, query_params),
            interaction=interaction,
            balp_kind=balp_kind,
            patients=tuple(dict.fromkeys(patients)),
            references=tuple(dict.fromkeys(references)),
            outcome=outcome,
            reason=reason,
            latency_ms=round(float(latency_ms), 3),
            client_address=client_address,
            role=role,
            purpose=purpose,
            break_glass=bool(break_glass),
            proposal=proposal,
            decider=decider,
        )

    def to_dict(self) -> dict[str, Any]:
        """The record as a plain dict (tuples as lists)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _OMITTED_WHEN_UNSET and value in (None, False):
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def to_json(self) -> bytes:
        """Canonical JSON (sorted keys, no whitespace): the exact bytes the audit chain hashes."""
        return orjson.dumps(self.to_dict(), option=orjson.OPT_SORT_KEYS)

    @classmethod
    def from_row(cls, data: str | bytes) -> AuditRecord:
        """Parse a stored record; raises AuditError when the stored JSON is not a record."""
        try:
            raw = orjson.loads(data)
            if not isinstance(raw, dict):
                raise TypeError("not an object")
            for name in _TUPLE_FIELDS:
                raw[name] = tuple(raw.get(name) or ())
            return cls(**raw)
        except (orjson.JSONDecodeError, TypeError, InvalidInput) as exc:
            detail = exc.param if isinstance(exc, InvalidInput) else type(exc).__name__
            raise AuditError(f"stored audit record is malformed ({detail})") from None
