"""The operator's use cases: approve or reject a pending proposal at the CLI, and apply what was approved.

An approval is a person's decision (`fhirgate approvals approve ID --as NAME`): the proposal store refuses
self-approval of a high-risk proposal, expired and already-decided ones. An approved proposal is written at
once (writes.applier: version-checked, all or nothing) and marked applied or failed. Each step leaves its
own audit record: the decision (`write.approve` / `write.reject`, an operation) and the write (a BALP
Create, Update or Delete), both naming the proposal and the decider; a refused decision is recorded too.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from fhirgate.core.writes.proposal import Proposal
from fhirgate.errors import AccessDenied, Conflict
from fhirgate.service.auditing import AuditWriter
from fhirgate.service.writes import proposal_patients
from fhirgate.store.contract import FhirStore
from fhirgate.writes.applier import Applied, apply_proposal
from fhirgate.writes.proposal_rules import Proposals


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an operator's decision did: the proposal as now stored and, when approved, the write's outcome."""

    proposal: Proposal
    applied: Applied | None = None


class ApprovalDesk:
    """Decisions taken by a person at the CLI, applied to the store and audited."""

    def __init__(self, store: FhirStore, proposals: Proposals, audit: AuditWriter) -> None:
        self.store = store
        self.proposals = proposals
        self.audit = audit

    def _record(
        self,
        p: Proposal | None,
        request_id: str,
        interaction: str,
        kind: str,
        *,
        proposal_id: str,
        decider: str,
        outcome: str = "success",
        reason: str | None = None,
    ) -> None:
        self.audit.write_operator(
            request_id=request_id,
            interaction=interaction,
            balp_kind=kind,
            outcome=outcome,
            decider=decider,
            proposal=proposal_id,
            reason=reason,
            resource_type=p.resource_type if p is not None else None,
            patients=proposal_patients(p) if p is not None else [],
            references=[f"{p.resource_type}/{p.target_id}"] if p is not None else [],
        )

    def decide(self, proposal_id: str, decider: str, approve: bool, reason: str | None = None) -> Outcome:
        """Approve (and write) or reject; a refusal (self-approval, expired, decided) is audited and raised."""
        request_id = uuid.uuid4().hex
        interaction = "write.approve" if approve else "write.reject"
        try:
            proposal = self.proposals.decide(proposal_id, decider, approve, reason)
        except (AccessDenied, Conflict) as exc:
            why = exc.reason if isinstance(exc, AccessDenied) else exc.message.split(":", 1)[0]
            self._record(
                None,
                request_id,
                interaction,
                "operation",
                proposal_id=proposal_id,
                decider=decider,
                outcome="denied",
                reason=why,
            )
            raise
        self._record(proposal, request_id, interaction, "operation", proposal_id=proposal.id, decider=decider)
        if not approve:
            return Outcome(proposal)
        applied = apply_proposal(self.store, self.proposals, proposal)
        error = applied.error
        self._record(
            applied.proposal,
            request_id + ".write",
            "write.apply",
            proposal.kind,
            proposal_id=proposal.id,
            decider=decider,
            outcome="success" if error is None else "error",
            reason=None if error is None else error.code,
        )
        return Outcome(applied.proposal, applied)
