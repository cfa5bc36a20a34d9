"""Write use cases: every write is first a proposal — validated, authorized, risk-scored and shown as a diff.

Nothing here writes a resource directly. A write tool builds the resource it would write (a Draft), and
`WriteDesk.propose` checks it under the caller's scopes and policy, validates it (fhir.resources R4B
plus referential integrity), scores its risk (core.writes.risk) and stores a signed pending proposal
(writes.approvals). The write itself happens only when the proposal is confirmed in the chat by its
proposer (low risk, single-use confirmation token) or approved by a person at the CLI, through
writes.applier (version-checked, all or nothing). Audit records come from the Gateway, one per request.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fhirgate.core.fhir.compartment import patients_of
from fhirgate.core.fhir.validate import check_reference, collect_references, validate_resource
from fhirgate.core.writes.diff import diff_resources, render_diff
from fhirgate.core.writes.proposal import Proposal
from fhirgate.core.writes.risk import RiskAssessment, assess_one
from fhirgate.errors import AccessDenied, InvalidInput, NotFound, StoreError, ValidationFailed
from fhirgate.service.auditing import Trail
from fhirgate.service.guard import Guard
from fhirgate.service.resources import not_found
from fhirgate.store.contract import FhirStore, Resource, StoredResource
from fhirgate.writes.proposal_rules import Proposals

MAX_IDEMPOTENCY_KEY = 200
_LETTER = {"create": "c", "update": "u", "delete": "d"}


@dataclass(frozen=True, slots=True)
class Draft:
    """A write a tool would make: the resource, the stored version it replaces (updates) and a summary."""

    kind: str
    resource: Resource
    current: StoredResource | None
    summary: str

    @property
    def resource_type(self) -> str:
        return str(self.resource["resourceType"])

    @property
    def ref(self) -> str:
        return f"{self.resource_type}/{self.resource['id']}"


def new_id() -> str:
    """A server-assigned id for a created resource (FHIR R4 §3.1.0.6: the server assigns the id)."""
    return str(uuid.uuid4())


def check_idempotency_key(value: object) -> str:
    """The caller's idempotency key, or a fresh one (then only an identical retry of THIS call matches)."""
    if value is None:
        return "auto-" + uuid.uuid4().hex
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_IDEMPOTENCY_KEY:
        raise InvalidInput("idempotency_key", "must be non-empty text", f"at most {MAX_IDEMPOTENCY_KEY} characters")
    if any(ord(ch) < 32 for ch in value):
        raise InvalidInput("idempotency_key", "contains control characters")
    return value


def scope_context(guard: Guard, resource_type: str, letter: str) -> str:
    """`system` when only system/ scopes grant the write, `patient` when only patient/ ones, else `user`."""
    contexts = {s.context for s in guard.principal.scopes.granting(resource_type, letter)}
    if contexts == {"system"}:
        return "system"
    if contexts == {"patient"}:
        return "patient"
    return "user"


def read_visible(store: FhirStore, guard: Guard, resource_type: str, id: str) -> StoredResource:
    """The stored resource when the caller may read it; NotFound alike for missing and not permitted."""
    guard.plan(resource_type, "r")
    stored = store.read(resource_type, id)
    if stored is None:
        raise not_found(resource_type, id)
    decision, _ = guard.check(stored, "r")
    if not decision.allowed:
        raise not_found(resource_type, id)
    return stored


def proposal_view(p: Proposal) -> dict[str, Any]:
    """What the model may know about a proposal: state and risk codes, no resource values."""
    return {
        "id": p.id,
        "status": p.status,
        "risk": p.risk,
        "risk_reasons": list(p.risk_reasons),
        "kind": p.kind,
        "target": f"{p.resource_type}/{p.target_id}",
        "created": p.created,
        "expires": p.expires,
        "decided": p.decided,
        "decided_by_you": p.decider is not None and p.decider == p.subject_key,
        "outcome": p.outcome,
    }


def proposal_patients(p: Proposal) -> list[str]:
    """Patients whose compartment holds the old or new version (for the audit record; FHIR R4 §3.2.0)."""
    found: dict[str, None] = {}
    for body in (p.current, p.resource):
        if body is not None:
            try:
                found.update(dict.fromkeys(patients_of(body)))
            except InvalidInput:
                continue
    return list(found)


def next_step(p: Proposal) -> str:
    """One sentence telling the model what happens next for a proposal in its current status."""
    if p.status == "pending":
        who = "someone other than the proposer" if p.high_risk else "a person with access to the server"
        return (
            f"Nothing is written yet. Proposal {p.id} waits for approval by {who}: they run `fhirgate approvals "
            f"show {p.id}` and `fhirgate approvals approve {p.id} --as NAME` (or reject). Tell the user, then check "
            f'with proposal_status("{p.id}"). It expires at {p.expires}.'
        )
    if p.status == "approved":
        return "Approved; the write is being applied. Check again with proposal_status."
    if p.status == "applied":
        return f"Written: {p.outcome}."
    if p.status == "failed":
        return f"Approved but not written: {p.outcome}. Nothing was changed; read the record again and propose anew."
    if p.status == "rejected":
        return f"Rejected ({p.decision_reason}). Nothing was written."
    return "Expired before anyone decided. Nothing was written; propose again if still wanted."


class WriteDesk:
    """Proposals for one store: drafting checks, policy, validation, risk and the signed proposal store."""

    def __init__(self, store: FhirStore, proposals: Proposals | None) -> None:
        self.store = store
        self._proposals = proposals

    @property
    def proposals(self) -> Proposals:
        """The proposal store; StoreError when this gateway was built without one (no data directory)."""
        if self._proposals is None:
            raise StoreError("writes need a proposal store (a data directory); this server has none")
        return self._proposals

    def close(self) -> None:
        """Close the proposal store, if any."""
        if self._proposals is not None:
            self._proposals.close()

    def now(self) -> datetime:
        """The proposal store's clock (injectable in tests)."""
        return self.proposals.now()

    # -- checks --------------------------------------------------------------------------------

    def _check_references(self, resource: Resource) -> None:
        """Referential integrity: every relative reference names a resource that exists (ids only in errors)."""
        for ref in collect_references(resource):
            if ref.startswith(("#", "urn:")) or check_reference(ref) is not None or "://" in ref:
                continue
            rtype, _, rest = ref.partition("/")
            if self.store.read(rtype, rest.split("/", 1)[0]) is None:
                raise InvalidInput("resource", f"reference {ref} points to no stored resource", "existing resources")

    @staticmethod
    def _authorize_type(guard: Guard, draft: Draft) -> None:
        """The caller may write this type at all: the role's write types and a SMART c/u scope for it."""
        rtype = draft.resource_type
        if guard.standing is not None:
            decision = guard.standing.role.allows_write(rtype)
            if not decision.allowed:
                raise AccessDenied(decision.detail, reason=decision.reason)
        guard.plan(rtype, _LETTER[draft.kind])

    @staticmethod
    def _screen(guard: Guard, draft: Draft) -> None:
        """The new version passes what a read of it would: compartment, Consent, care team, labels."""
        letter = _LETTER[draft.kind]
        proposed = StoredResource(draft.resource_type, str(draft.resource["id"]), 0, "", draft.resource)
        decision, _ = guard.check(proposed, letter)
        if not decision.allowed:
            raise AccessDenied(decision.detail or "This write is outside your access.", reason=decision.reason)

    @staticmethod
    def _validate(resource: Resource) -> None:
        try:
            validate_resource(resource, mode="full")
        except ValidationFailed as exc:
            raise InvalidInput("resource", exc.message, "a valid FHIR R4 resource") from None

    # -- the one way in ---------------------------------------------------------------------------

    def propose(
        self, guard: Guard, trail: Trail, draft: Draft, idempotency_key: object, *, ttl_hours: int
    ) -> tuple[dict[str, Any], Proposal]:
        """Check, score and store the draft as a pending proposal (or return the one this key already made)."""
        key = check_idempotency_key(idempotency_key)
        trail.resource_type = draft.resource_type
        trail.references = [draft.ref]
        self._authorize_type(guard, draft)  # before validation: no reference probing without write access
        self._validate(draft.resource)
        self._check_references(draft.resource)
        self._screen(guard, draft)
        current = draft.current.body if draft.current is not None else None
        standing = guard.standing
        risk: RiskAssessment = assess_one(
            draft.kind,
            draft.resource_type,
            current,
            draft.resource,
            scope_context=scope_context(guard, draft.resource_type, _LETTER[draft.kind]),
            **({"sensitive": standing.sensitive} if standing is not None else {}),
        )
        trail.patients = list(risk.patients)
        created, expires = self.proposals.deadline(timedelta(hours=ttl_hours))
        principal = guard.principal
        proposal = Proposal(
            id=self.proposals.new_id(),
            kind=draft.kind,
            resource_type=draft.resource_type,
            target_id=str(draft.resource["id"]),
            resource=draft.resource,
            current=current,
            base_version=str(draft.current.version) if draft.current is not None else None,
            subject_key=principal.subject_key,
            client_id=principal.client_id,
            purpose=standing.purpose if standing is not None else None,
            idempotency_key=key,
            created=created,
            expires=expires,
            risk=risk.level,
            risk_reasons=risk.codes,
        )
        stored, is_new = self.proposals.create(proposal)
        trail.proposal = stored.id
        changes = diff_resources(stored.current, stored.resource)
        shown = guard.project(StoredResource(stored.resource_type, stored.target_id, 0, "", stored.resource or {}))
        hidden = set((stored.resource or {}).keys()) - set(shown.body.keys())
        visible = [c for c in changes if c.top not in hidden]
        result = {
            "proposal": proposal_view(stored),
            "new": is_new,
            "summary": draft.summary,
            "risk_detail": [{"code": r.code, "level": r.level, "detail": r.detail} for r in risk.reasons]
            if is_new
            else [{"code": code} for code in stored.risk_reasons],
            "changes": [c.to_dict() for c in visible],
            "diff": render_diff(visible),
            "idempotency_key": key,
            "next_step": next_step(stored),
        }
        return result, stored

    def status(self, guard: Guard, proposal_id: str) -> dict[str, Any]:
        """The state of one of the caller's own proposals (another's is not found)."""
        proposal = self.own(guard, proposal_id)
        return {"proposal": proposal_view(proposal), "next_step": next_step(proposal)}

    def own(self, guard: Guard, proposal_id: str) -> Proposal:
        """One of the caller's proposals; NotFound alike for unknown ids and other principals' proposals."""
        try:
            proposal = self.proposals.get(proposal_id)
        except NotFound:
            raise NotFound(f"no proposal {proposal_id} of yours") from None
        if proposal.subject_key != guard.principal.subject_key:
            raise NotFound(f"no proposal {proposal_id} of yours")
        return proposal


def merge_hidden(current: Mapping[str, Any], proposed: Mapping[str, Any], guard: Guard) -> dict[str, Any]:
    """An update keeps the elements the caller's role cannot see (its projection) as stored.

    A role that receives a projected resource would otherwise delete every element it was never shown;
    sending one of those elements is refused, since the caller cannot have read it (minimum necessary,
    45 CFR 164.502(b)).
    """
    rule = guard.standing.role.field_rule(str(current.get("resourceType"))) if guard.standing is not None else None
    if rule is None:
        return dict(proposed)
    sent_hidden = sorted(k.lstrip("_") for k in proposed if not rule.keeps(k))
    if sent_hidden:
        raise InvalidInput("resource", f"elements not writable by your role: {', '.join(sent_hidden)}")
    merged = dict(proposed)
    for name, value in current.items():
        if not rule.keeps(name):
            merged[name] = value
    return merged
