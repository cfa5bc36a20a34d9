"""Applying an approved proposal to the store: exactly what was approved, against the version it was shown.

The write is version-aware (FHIR R4 §3.1.0.5.3, If-Match): an update or delete carries the `base_version`
the proposal was made against, a create requires that the new id is still unused, and any difference makes
the store refuse the whole write (Conflict, nothing written). An Appointment also takes and releases its
Slots in the same transaction, each pinned to the version read just before, and the participants'
calendars are checked for overlaps INSIDE the write transaction, so two bookings of one time cannot both
land. The proposal is then marked `applied` or `failed` (with why, ids only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from fhirgate.core.writes import effects, scheduling
from fhirgate.core.writes.proposal import Proposal
from fhirgate.errors import Conflict, FhirgateError, InvalidInput, NotFound, StoreError, ValidationFailed
from fhirgate.store.contract import FhirStore, Resource, StoredResource
from fhirgate.writes.calendar import appointments_around, read_bodies
from fhirgate.writes.proposal_rules import Proposals

# Errors that mean "this write cannot be made as approved"; anything else is an outage, not a verdict.
_REFUSALS = (Conflict, InvalidInput, ValidationFailed, NotFound)


@dataclass(frozen=True, slots=True)
class Applied:
    """The outcome of applying one proposal: the proposal as now stored, what was written, and why it failed."""

    proposal: Proposal
    written: tuple[StoredResource, ...] = ()
    error: FhirgateError | None = None

    @property
    def ok(self) -> bool:
        return self.proposal.status == "applied"


def _slot_writes(store: FhirStore, proposal: Proposal, now: datetime) -> tuple[list[Resource], dict[str, int | None]]:
    """The Slots an Appointment write takes (free -> busy) and releases (busy -> free, future only)."""
    take, release = effects.slot_transitions(proposal.current, proposal.resource)
    stored = read_bodies(store, take + release)
    writes: list[Resource] = []
    expect: dict[str, int | None] = {}
    for ref in take:
        slot = stored.get(ref)
        if slot is None:
            raise Conflict(f"{ref} no longer exists")
        if slot.body.get("status") != "free":
            raise Conflict(f"{ref} is no longer free (status {slot.body.get('status')})")
        writes.append(effects.with_status(slot.body, "busy"))
        expect[ref] = slot.version
    for ref in release:
        slot = stored.get(ref)
        start = scheduling.parse_time(slot.body.get("start")) if slot is not None else None
        if slot is None or slot.body.get("status") != "busy" or start is None or start <= now:
            continue  # a past or already-free slot stays as it is
        writes.append(effects.with_status(slot.body, "free"))
        expect[ref] = slot.version
    return writes, expect


def _overlap_check(store: FhirStore, proposal: Proposal) -> Callable[[], None] | None:
    """A precondition refusing the write when a participant is busy at the new time (run inside the write)."""
    if proposal.resource is None:
        return None
    checks = effects.time_checks(proposal.resource, proposal.current)
    if checks is None:
        return None
    who, (start, end) = checks

    def check() -> None:
        for actor in who:
            clash = effects.overlapping(
                appointments_around(store, actor, start, end), start, end, exclude=proposal.target_id
            )
            if clash:
                raise Conflict(f"{actor} already has Appointment/{clash[0]} at that time")

    return check


def _write(store: FhirStore, proposal: Proposal, now: datetime) -> tuple[StoredResource, ...]:
    ref = f"{proposal.resource_type}/{proposal.target_id}"
    if proposal.kind == "delete":
        if not store.delete(proposal.resource_type, proposal.target_id, expect_version=int(proposal.base_version or 0)):
            raise Conflict(f"{ref} no longer exists")
        return ()
    assert proposal.resource is not None  # the Proposal model requires it for create and update
    resources: list[Resource] = [proposal.resource]
    expect: dict[str, int | None] = {ref: None if proposal.kind == "create" else int(proposal.base_version or 0)}
    precondition = None
    if proposal.resource_type == "Appointment":
        slots, pinned = _slot_writes(store, proposal, now)
        resources += slots
        expect.update(pinned)
        precondition = _overlap_check(store, proposal)
    return tuple(store.write(resources, expect=expect, precondition=precondition))


def apply_proposal(
    store: FhirStore, proposals: Proposals, proposal: Proposal, *, now: datetime | None = None
) -> Applied:
    """Write an approved proposal and mark it applied, or failed with the reason the store refused it.

    Refusals (stale version, slot taken, overlap, invalid) come back in `Applied.error` with the proposal
    marked failed; a store outage (StoreError) propagates and leaves the proposal approved, to retry.
    """
    if proposal.status != "approved":
        raise Conflict(f"proposal {proposal.id} is {proposal.status}, not approved")
    moment = now or datetime.now(UTC)
    try:
        written = _write(store, proposal, moment)
    except StoreError:
        raise
    except _REFUSALS as exc:
        failed = proposals.mark_outcome(proposal.id, "failed", f"{exc.code}: {exc.message}")
        return Applied(failed, error=exc)
    main = written[0] if written else None
    detail = (
        f"{main.ref} version {main.version}"
        if main is not None
        else f"{proposal.resource_type}/{proposal.target_id} deleted"
    )
    return Applied(proposals.mark_outcome(proposal.id, "applied", detail), written)
