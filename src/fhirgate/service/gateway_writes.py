"""The Gateway's write use cases (a mixin): propose, see a proposal's status, confirm or decline it in the chat.

Each is one audited request like every other use case. A proposal request is recorded as an `operation`
(`write.propose`, with the proposal id); a confirmation that writes is recorded as the BALP Create, Update
or Delete it performed, with the proposal id and the decider (the confirming principal). Which roles may
call these tools, and whether writes are on at all, is the policy's decision (governance.tool_decision).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from fhirgate.errors import Conflict
from fhirgate.service import write_drafts
from fhirgate.service.auditing import Trail
from fhirgate.service.context import RequestContext
from fhirgate.service.guard import Guard
from fhirgate.service.writes import Draft, WriteDesk, next_step, proposal_patients, proposal_view
from fhirgate.writes.applier import apply_proposal

if TYPE_CHECKING:
    from fhirgate.core.policy.principal import Principal
    from fhirgate.service.governance import Governance

T = TypeVar("T")


class WriteUseCases:
    """Write use cases mixed into Gateway, which provides `_run`, `governance` and `writes`."""

    governance: Governance
    writes: WriteDesk

    def _run(self, ctx: RequestContext, trail: Trail, body: Callable[[Guard], T], tool: str) -> T:
        raise NotImplementedError  # provided by Gateway

    def _propose(
        self,
        ctx: RequestContext,
        tool: str,
        arguments: dict[str, Any],
        build: Callable[[Guard, datetime], Draft],
    ) -> dict[str, Any]:
        trail = Trail("write.propose", balp_kind="operation", arguments=arguments)
        ttl = self.governance.policy.writes.proposal_ttl_hours

        def body(guard: Guard) -> dict[str, Any]:
            draft = build(guard, self.writes.now())
            result, _ = self.writes.propose(guard, trail, draft, arguments.get("idempotency_key"), ttl_hours=ttl)
            return result

        return self._run(ctx, trail, body, tool)

    def book_appointment(
        self, ctx: RequestContext, *, idempotency_key: str | None = None, **args: Any
    ) -> dict[str, Any]:
        """Propose a booking (write_drafts.book): free Slots, no overlaps; low risk, confirmable in the chat."""
        store = self.writes.store
        return self._propose(
            ctx,
            "book_appointment",
            {**args, "idempotency_key": idempotency_key},
            lambda g, now: write_drafts.book(store, g, now, **args),
        )

    def update_appointment(
        self, ctx: RequestContext, *, idempotency_key: str | None = None, **args: Any
    ) -> dict[str, Any]:
        """Propose rescheduling, cancelling (with a reason), arrival, check-in or a no-show."""
        store = self.writes.store
        return self._propose(
            ctx,
            "update_appointment",
            {**args, "idempotency_key": idempotency_key},
            lambda g, now: write_drafts.change_appointment(store, g, now, **args),
        )

    def add_clinical_note(
        self, ctx: RequestContext, *, idempotency_key: str | None = None, **args: Any
    ) -> dict[str, Any]:
        """Propose a draft note (DocumentReference, docStatus preliminary) for a patient."""
        store = self.writes.store
        return self._propose(
            ctx,
            "add_clinical_note",
            {**args, "idempotency_key": idempotency_key},
            lambda g, now: write_drafts.clinical_note(store, g, now, **args),
        )

    def create_resource(
        self, ctx: RequestContext, resource: object, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Propose creating any resource of a type the caller's role may write."""
        store = self.writes.store
        return self._propose(
            ctx,
            "create_resource",
            {"resource": resource, "idempotency_key": idempotency_key},
            lambda g, now: write_drafts.create(store, g, now, resource=resource),
        )

    def update_resource(
        self, ctx: RequestContext, resource: object, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Propose a new version of a resource read at `meta.versionId` (a stale version is refused)."""
        store = self.writes.store
        return self._propose(
            ctx,
            "update_resource",
            {"resource": resource, "idempotency_key": idempotency_key},
            lambda g, now: write_drafts.update(store, g, now, resource=resource),
        )

    def proposal_status(self, ctx: RequestContext, proposal_id: str) -> dict[str, Any]:
        """The state of one of the caller's proposals and what happens next."""
        trail = Trail("write.status", balp_kind="operation", arguments={"proposal_id": proposal_id})

        def body(guard: Guard) -> dict[str, Any]:
            trail.proposal = proposal_id if isinstance(proposal_id, str) else None
            return self.writes.status(guard, proposal_id)

        return self._run(ctx, trail, body, "proposal_status")

    # -- the in-chat confirmation (low risk, the proposer, a single-use token) ---------------------

    def confirmation_token(self, principal: Principal, proposal_id: str) -> str | None:
        """A confirmation token for a pending low-risk proposal of `principal`, else None (it needs approval)."""
        proposal = self.writes.proposals.get(proposal_id)
        if proposal.status != "pending" or proposal.high_risk or proposal.subject_key != principal.subject_key:
            return None
        return self.writes.proposals.confirmation_token(proposal, principal)

    def confirm_proposal(self, ctx: RequestContext, tool: str, proposal_id: str, token: str) -> dict[str, Any]:
        """Check the token (forged, replayed, expired are refused), approve as the proposer and write."""
        trail = Trail("write.confirm", balp_kind="operation", arguments={"proposal_id": proposal_id})
        trail.decider = ctx.principal.subject_key

        def body(guard: Guard) -> dict[str, Any]:
            proposal = self.writes.own(guard, proposal_id)
            trail.proposal = proposal.id
            trail.balp_kind = proposal.kind
            trail.resource_type = proposal.resource_type
            trail.references = [f"{proposal.resource_type}/{proposal.target_id}"]
            trail.patients = proposal_patients(proposal)
            approved = self.writes.proposals.check_confirmation(token, proposal, guard.principal)
            applied = apply_proposal(self.writes.store, self.writes.proposals, approved, now=self.writes.now())
            trail.references += [s.ref for s in applied.written[1:]]
            if applied.error is not None:
                raise Conflict(
                    f"{applied.error.message}; proposal {proposal.id} was confirmed but not written (nothing "
                    "changed); read the record again and propose anew"
                )
            return {
                "proposal": proposal_view(applied.proposal),
                "written": [{"ref": s.ref, "version": s.version} for s in applied.written],
                "next_step": next_step(applied.proposal),
            }

        return self._run(ctx, trail, body, tool)

    def decline_proposal(self, ctx: RequestContext, tool: str, proposal_id: str, reason: str) -> dict[str, Any]:
        """The user declined in the chat: the proposer withdraws the proposal (rejected, nothing written)."""
        trail = Trail("write.decline", balp_kind="operation", arguments={"proposal_id": proposal_id})
        trail.decider = ctx.principal.subject_key

        def body(guard: Guard) -> dict[str, Any]:
            proposal = self.writes.own(guard, proposal_id)
            trail.proposal = proposal.id
            trail.references = [f"{proposal.resource_type}/{proposal.target_id}"]
            trail.patients = proposal_patients(proposal)
            rejected = self.writes.proposals.decide(proposal.id, guard.principal.subject_key, False, reason)
            return {"proposal": proposal_view(rejected), "next_step": next_step(rejected)}

        return self._run(ctx, trail, body, tool)
