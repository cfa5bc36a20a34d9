"""What an Appointment write does to the calendar besides itself: Slots taken or released, time overlaps.

Pure. A proposal carries one resource; when it is an Appointment, the Slots it books change with it
(FHIR R4 slot.html: a Slot is `busy` once an Appointment takes it, `free` when that Appointment is cancelled
or moved). These effects are worked out again when the write is applied, against the Slots as stored then,
so a slot taken meanwhile by another booking makes the write fail instead of double-booking.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from fhirgate.core.writes.scheduling import BUSY_STATUSES, appointment_interval


def holds_time(appointment: Mapping[str, Any] | None) -> bool:
    """Whether the Appointment blocks its participants' time (a busy status)."""
    return appointment is not None and appointment.get("status") in BUSY_STATUSES


def references(appointment: Mapping[str, Any] | None, element: str) -> tuple[str, ...]:
    """Relative references `Type/id` in a list element of references (e.g. `slot`)."""
    out: list[str] = []
    for item in (appointment or {}).get(element) or ():
        ref = item.get("reference") if isinstance(item, Mapping) else None
        if isinstance(ref, str) and "/" in ref and not ref.startswith(("http", "urn:", "#")):
            out.append(ref)
    return tuple(dict.fromkeys(out))


def actors(appointment: Mapping[str, Any], resource_type: str) -> tuple[str, ...]:
    """Participant actor references of one type (`Patient/…`, `Practitioner/…`)."""
    out: list[str] = []
    for participant in appointment.get("participant") or ():
        actor = participant.get("actor") if isinstance(participant, Mapping) else None
        ref = actor.get("reference") if isinstance(actor, Mapping) else None
        if isinstance(ref, str) and ref.startswith(resource_type + "/"):
            out.append(ref)
    return tuple(dict.fromkeys(out))


def slot_transitions(
    current: Mapping[str, Any] | None, proposed: Mapping[str, Any] | None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(Slots the write takes, Slots it releases) as `Slot/id` refs, from the old and new Appointment."""
    before = set(references(current, "slot")) if holds_time(current) else set()
    after = references(proposed, "slot") if holds_time(proposed) else ()
    take = tuple(ref for ref in after if ref not in before)
    release = tuple(ref for ref in references(current, "slot") if ref in before and ref not in after)
    return take, release


def with_status(slot: Mapping[str, Any], status: str) -> dict[str, Any]:
    """A Slot body with a new status, server-managed meta (versionId, lastUpdated) removed."""
    body = {**slot, "status": status}
    meta = body.get("meta")
    if isinstance(meta, Mapping):
        kept = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
        if kept:
            body["meta"] = kept
        else:
            body.pop("meta")
    return body


def overlapping(
    appointments: Iterable[Mapping[str, Any]], start: datetime, end: datetime, *, exclude: str | None = None
) -> list[str]:
    """Ids of busy Appointments whose [start, end) overlaps [start, end), except the one with id `exclude`."""
    found: list[str] = []
    for appt in appointments:
        if appt.get("id") == exclude or not holds_time(appt):
            continue
        span = appointment_interval(appt)
        if span is not None and span[0] < end and start < span[1]:
            found.append(str(appt.get("id")))
    return found


def time_checks(
    proposed: Mapping[str, Any], current: Mapping[str, Any] | None
) -> tuple[Sequence[str], tuple[datetime, datetime]] | None:
    """(actor refs whose calendars must be free, interval) when the write newly occupies time, else None.

    A write occupies time when the new version holds time and either the old one did not or its interval
    or participants changed; a status change within busy statuses (booked -> arrived) does not.
    """
    span = appointment_interval(proposed)
    if not holds_time(proposed) or span is None:
        return None
    who = (*actors(proposed, "Practitioner"), *actors(proposed, "Patient"))
    if current is not None and holds_time(current) and appointment_interval(current) == span:
        new = [ref for ref in who if ref not in (*actors(current, "Practitioner"), *actors(current, "Patient"))]
        if not new:
            return None
        return new, span
    return who, span
