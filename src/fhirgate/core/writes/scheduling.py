"""Business rules for booking and changing Appointments against a practitioner's Slots (FHIR R4 Scheduling).

Pure: the caller reads the stored Slots and Appointments and passes them in with the clock (`now`); the
functions return the Appointment to write and the Slots whose status changes, or raise `InvalidInput` for a
bad request and `Conflict` for a time that is taken. Messages carry ids and times only, never names or the
free text of a booking (no PHI).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal, get_args

from fhirgate.core.writes.fields import fhir_id, free_text
from fhirgate.errors import Conflict, InvalidInput

Action = Literal["reschedule", "cancel", "arrived", "checked-in", "noshow"]
ACTIONS: tuple[Action, ...] = get_args(Action)

# valueset-appointmentstatus: statuses that hold the participants' time (an appointment is planned or under way).
BUSY_STATUSES: frozenset[str] = frozenset({"proposed", "pending", "booked", "arrived", "checked-in"})
# valueset-appointmentstatus transitions reachable through `plan_appointment_change`: status -> action -> new
# status. fulfilled, cancelled, noshow and entered-in-error are final; waitlist can only be cancelled.
TRANSITIONS: Mapping[str, Mapping[Action, str]] = {
    "proposed": {"reschedule": "proposed", "cancel": "cancelled"},
    "pending": {"reschedule": "pending", "cancel": "cancelled", "noshow": "noshow"},
    "booked": {
        "reschedule": "booked",
        "cancel": "cancelled",
        "arrived": "arrived",
        "checked-in": "checked-in",
        "noshow": "noshow",
    },
    "arrived": {"cancel": "cancelled", "checked-in": "checked-in"},
    "checked-in": {"cancel": "cancelled"},
    "waitlist": {"cancel": "cancelled"},
}
# slot.html (valueset-slotstatus): a Slot held by an appointment; freeing it makes it bookable again.
HELD_SLOT_STATUSES: frozenset[str] = frozenset({"busy", "busy-tentative"})

MIN_MINUTES = 5
MAX_MINUTES = 480
MAX_DAYS_AHEAD = 365
ARRIVAL_WINDOW = timedelta(hours=2)
MAX_FREE_LISTED = 8
MAX_SERVICE_TYPE = 200
MAX_REASON = 500
MAX_DESCRIPTION = 1000
# Elements of meta that the server sets on every write (FHIR R4 §3.1.0.5); a proposed body carries neither.
_SERVER_META = ("versionId", "lastUpdated")


@dataclass(frozen=True, slots=True)
class Booking:
    """What `book_appointment` asks for: who, when (tz-aware `start`), how long, and optional free text."""

    patient_id: str
    practitioner_id: str
    start: datetime
    minutes: int
    service_type: str | None = None
    reason: str | None = None
    description: str | None = None
    location_id: str | None = None


@dataclass(frozen=True, slots=True)
class SlotChange:
    """A Slot whose status the write changes: its stored `version`, the status `before` and `after`, the new body."""

    slot_id: str
    version: int
    before: str
    after: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BookingPlan:
    """A new Appointment and the Slots it takes."""

    appointment: dict[str, Any]
    slots: tuple[SlotChange, ...]


@dataclass(frozen=True, slots=True)
class AppointmentChange:
    """The changed Appointment (server meta removed) and the Slots it frees or takes."""

    appointment: dict[str, Any]
    slots: tuple[SlotChange, ...]


@dataclass(frozen=True, slots=True)
class _Slot:
    """A stored Slot with its interval parsed."""

    id: str
    status: str
    start: datetime
    end: datetime
    body: Mapping[str, Any]


# -- small helpers ---------------------------------------------------------------------------------------------


def _aware(param: str, value: object) -> datetime:
    """A datetime with a UTC offset: a booking time without one is ambiguous."""
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(param, "must be a date-time with a UTC offset", "e.g. 2026-11-23T10:00:00-05:00")
    return value


def _text(param: str, value: object, limit: int, *, multiline: bool) -> str | None:
    """Optional free text (fields.free_text), None when absent."""
    return None if value is None else free_text(param, value, limit, multiline=multiline)


def parse_time(value: object) -> datetime | None:
    """A stored FHIR instant/dateTime as an aware datetime; None when absent, partial or without an offset."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def offset_instant(moment: datetime) -> str:
    """A FHIR instant with seconds precision and the datetime's own offset (as demo/schedule.py writes them)."""
    return moment.replace(microsecond=0).isoformat(timespec="seconds")


def _at(moment: datetime) -> str:
    """A time for messages: minutes precision with its offset, e.g. 2026-11-23T10:15+00:00."""
    return moment.isoformat(timespec="minutes")


def _add(start: datetime, minutes: int) -> datetime:
    """`start` plus elapsed minutes, computed in UTC so a DST change inside the interval cannot stretch it."""
    zone: tzinfo | None = start.tzinfo
    return (start.astimezone(UTC) + timedelta(minutes=minutes)).astimezone(zone)


def _overlaps(a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> bool:
    """Whether half-open intervals [a_start, a_end) and [b_start, b_end) share a moment."""
    return a_start < b_end and b_start < a_end


def _strip_server_meta(resource: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy without meta.versionId/lastUpdated; meta is dropped when nothing else is left (FHIR JSON
    objects are never empty, json.html)."""
    body = copy.deepcopy(dict(resource))
    meta = body.get("meta")
    if isinstance(meta, dict):
        kept = {k: v for k, v in meta.items() if k not in _SERVER_META}
        if kept:
            body["meta"] = kept
        else:
            del body["meta"]
    return body


def _version(slot: _Slot) -> int:
    """The stored meta.versionId of a Slot as an integer (the write is version-aware, FHIR R4 §3.1.0.5.3)."""
    meta = slot.body.get("meta")
    raw = meta.get("versionId") if isinstance(meta, Mapping) else None
    if isinstance(raw, str) and raw.isdigit():
        return int(raw)
    raise InvalidInput("slots", f"Slot/{slot.id} has no numeric meta.versionId", "stored Slots as read")


def _slot_change(slot: _Slot, after: str) -> SlotChange:
    """The Slot with its status set to `after` (slot.html Slot.status)."""
    body = _strip_server_meta(slot.body)
    body["status"] = after
    return SlotChange(slot.id, _version(slot), slot.status, after, body)


def _slots(raw: Sequence[Mapping[str, Any]]) -> list[_Slot]:
    """The stored Slots with a usable id, status and interval, in start order."""
    out: list[_Slot] = []
    for body in raw:
        sid, status = body.get("id"), body.get("status")
        start, end = parse_time(body.get("start")), parse_time(body.get("end"))
        if isinstance(sid, str) and isinstance(status, str) and start is not None and end is not None and start < end:
            out.append(_Slot(sid, status, start, end, body))
    return sorted(out, key=lambda s: (s.start, s.id))


def appointment_interval(appointment: Mapping[str, Any]) -> tuple[datetime, datetime] | None:
    """An Appointment's [start, end): end from `end`, else from minutesDuration, else the start instant alone."""
    start = parse_time(appointment.get("start"))
    if start is None:
        return None
    end = parse_time(appointment.get("end"))
    if end is not None:
        return start, end
    minutes = appointment.get("minutesDuration")
    if isinstance(minutes, int) and not isinstance(minutes, bool) and minutes > 0:
        return start, _add(start, minutes)
    return start, start + timedelta(microseconds=1)


def _actor(appointment: Mapping[str, Any], resource_type: str) -> str | None:
    """The first participant reference to `resource_type` (appointment.html Appointment.participant.actor)."""
    for participant in appointment.get("participant") or ():
        actor = participant.get("actor") if isinstance(participant, Mapping) else None
        reference = actor.get("reference") if isinstance(actor, Mapping) else None
        if isinstance(reference, str) and reference.startswith(resource_type + "/"):
            return reference
    return None


def _slot_refs(appointment: Mapping[str, Any]) -> list[str]:
    """The Slot ids an Appointment references in `slot` (appointment.html Appointment.slot)."""
    out: list[str] = []
    for item in appointment.get("slot") or ():
        reference = item.get("reference") if isinstance(item, Mapping) else None
        if isinstance(reference, str) and reference.startswith("Slot/"):
            out.append(reference.removeprefix("Slot/"))
    return out


# -- rules ------------------------------------------------------------------------------------------------------


def _check_time(start: datetime, minutes: object, now: datetime) -> datetime:
    """The end of a requested interval after checking it starts in the future, within a year, on a whole minute,
    and lasts 5..480 minutes."""
    if not isinstance(minutes, int) or isinstance(minutes, bool) or not MIN_MINUTES <= minutes <= MAX_MINUTES:
        raise InvalidInput("minutes", "out of range", f"{MIN_MINUTES}..{MAX_MINUTES}")
    if start.second or start.microsecond:
        raise InvalidInput("start", "must be on a whole minute")
    if start <= now:
        raise InvalidInput("start", "must be in the future", f"after {_at(now)}")
    if start > now + timedelta(days=MAX_DAYS_AHEAD):
        raise InvalidInput("start", "is too far ahead", f"within {MAX_DAYS_AHEAD} days")
    return _add(start, minutes)


def _free_times(slots: Sequence[_Slot], start: datetime, now: datetime) -> str:
    """Up to 8 free slot start times on the day of `start` (in its offset) as HH:MM, for a Conflict message."""
    zone = start.tzinfo
    times: list[str] = []
    for slot in slots:
        local = slot.start.astimezone(zone)
        if slot.status == "free" and slot.start > now and local.date() == start.date():
            label = local.strftime("%H:%M")
            if label not in times:
                times.append(label)
    return ", ".join(times[:MAX_FREE_LISTED]) or "none"


def _slot_chain(
    slots: Sequence[_Slot], start: datetime, end: datetime, *, who: str, now: datetime, held: frozenset[str]
) -> list[_Slot]:
    """The consecutive free Slots exactly covering [start, end) (slot.html: a Slot is bookable when free); Slots
    in `held` (this appointment's own) count as free. Conflict when one in the interval is not free, or the
    chain has a gap or does not end at `end`."""

    def free(slot: _Slot) -> bool:
        return slot.status == "free" or (slot.id in held and slot.status in HELD_SLOT_STATUSES)

    for slot in slots:
        if _overlaps(slot.start, slot.end, start, end) and not free(slot):
            raise Conflict(f"Slot/{slot.id} is {slot.status} at {_at(slot.start)}")
    chain: list[_Slot] = []
    cursor = start
    while cursor < end:
        nxt = next((s for s in slots if s.start == cursor and free(s)), None)
        if nxt is None:
            raise Conflict(f"no free slot for {who} at {_at(cursor)}; free that day: {_free_times(slots, start, now)}")
        chain.append(nxt)
        cursor = nxt.end
    if cursor != end:
        raise Conflict(
            f"Slot/{chain[-1].id} ends at {_at(cursor)}, after the booking's end {_at(end)}: book whole slots"
        )
    return chain


def _check_overlaps(
    appointments: Sequence[Mapping[str, Any]], start: datetime, end: datetime, *, who: str, exclude: str | None
) -> None:
    """Conflict when a busy appointment (valueset-appointmentstatus) of `who` overlaps [start, end)."""
    for other in appointments:
        if other.get("id") == exclude or other.get("status") not in BUSY_STATUSES:
            continue
        interval = appointment_interval(other)
        if interval is not None and _overlaps(interval[0], interval[1], start, end):
            raise Conflict(
                f"{who} already has Appointment/{other.get('id')} ({other.get('status')}) "
                f"from {_at(interval[0])} to {_at(interval[1])}"
            )


# -- booking ----------------------------------------------------------------------------------------------------


def plan_booking(
    booking: Booking,
    *,
    new_id: str,
    now: datetime,
    slots: Sequence[Mapping[str, Any]],
    practitioner_appointments: Sequence[Mapping[str, Any]],
    patient_appointments: Sequence[Mapping[str, Any]],
) -> BookingPlan:
    """The booked Appointment and the Slots it takes, after checking the time is bookable and nobody is double-booked.

    `slots` are the stored Slots of the practitioner's Schedule(s) that day; empty means the practice keeps no
    Schedule for them, so only the appointment overlap checks apply.
    """
    fhir_id("new_id", new_id)
    patient = fhir_id("patient_id", booking.patient_id)
    practitioner = fhir_id("practitioner_id", booking.practitioner_id)
    location = None if booking.location_id is None else fhir_id("location_id", booking.location_id)
    service_type = _text("service_type", booking.service_type, MAX_SERVICE_TYPE, multiline=False)
    reason = _text("reason", booking.reason, MAX_REASON, multiline=True)
    description = _text("description", booking.description, MAX_DESCRIPTION, multiline=True)
    now = _aware("now", now)
    start = _aware("start", booking.start)
    end = _check_time(start, booking.minutes, now)
    who = f"Practitioner/{practitioner}"
    stored = _slots(slots)
    chain = _slot_chain(stored, start, end, who=who, now=now, held=frozenset()) if slots else []
    _check_overlaps(practitioner_appointments, start, end, who=who, exclude=None)
    _check_overlaps(patient_appointments, start, end, who=f"Patient/{patient}", exclude=None)

    appointment: dict[str, Any] = {"resourceType": "Appointment", "id": new_id, "status": "booked"}
    if service_type is not None:
        appointment["serviceType"] = [{"text": service_type}]
    if reason is not None:
        appointment["reasonCode"] = [{"text": reason}]
    if description is not None:
        appointment["description"] = description
    appointment |= {"start": offset_instant(start), "end": offset_instant(end), "minutesDuration": booking.minutes}
    if chain:
        appointment["slot"] = [{"reference": f"Slot/{s.id}"} for s in chain]
    appointment["created"] = now.date().isoformat()
    # Participant shape as in demo/schedule.py: patient and practitioner required and accepted, the Location
    # information-only (appointment.html Appointment.participant; participantrequired, participationstatus).
    participants: list[dict[str, Any]] = [
        {"actor": {"reference": f"Patient/{patient}"}, "required": "required", "status": "accepted"},
        {"actor": {"reference": who}, "required": "required", "status": "accepted"},
    ]
    if location is not None:
        participants.append(
            {"actor": {"reference": f"Location/{location}"}, "required": "information-only", "status": "accepted"}
        )
    appointment["participant"] = participants
    return BookingPlan(appointment, tuple(_slot_change(s, "busy") for s in chain))


# -- changes ----------------------------------------------------------------------------------------------------


def _refuse(action: str, status: str) -> InvalidInput:
    """The error for an action the status does not allow (valueset-appointmentstatus)."""
    allowed = ", ".join(TRANSITIONS.get(status, {})) or "none"
    return InvalidInput("action", f"cannot {action} an appointment that is {status}", allowed)


def _current_slots(current: Mapping[str, Any], raw: Sequence[Mapping[str, Any]]) -> list[_Slot]:
    """The stored Slots the appointment references; InvalidInput for one it does not reference."""
    referenced = set(_slot_refs(current))
    stored = _slots(raw)
    for slot in stored:
        if slot.id not in referenced:
            raise InvalidInput("current_slots", f"Slot/{slot.id} is not referenced by the appointment")
    return stored


def _require_interval(current: Mapping[str, Any]) -> tuple[datetime, datetime]:
    """The appointment's interval, or InvalidInput when it has no start time."""
    interval = appointment_interval(current)
    if interval is None:
        raise InvalidInput("current", "the appointment has no start time")
    return interval


def _check_when(action: str, current: Mapping[str, Any], now: datetime) -> None:
    """Time rules of arrival and no-show: arrived/checked-in within 2 h of the appointment, noshow after start."""
    if action in ("arrived", "checked-in"):
        start, end = _require_interval(current)
        if not start - ARRIVAL_WINDOW <= now <= end + ARRIVAL_WINDOW:
            raise InvalidInput(
                "action", f"{action} only from 2 h before start to 2 h after end", f"{_at(start)} to {_at(end)}"
            )
    elif action == "noshow":
        start, _ = _require_interval(current)
        if now < start:
            raise InvalidInput("action", "noshow only once the appointment has started", f"from {_at(start)}")


def _freed(slots: Sequence[_Slot], *, keep: frozenset[str] = frozenset()) -> list[SlotChange]:
    """The held Slots (busy, busy-tentative) made free again, except those in `keep`."""
    return [_slot_change(s, "free") for s in slots if s.status in HELD_SLOT_STATUSES and s.id not in keep]


def _reschedule(
    current: Mapping[str, Any],
    body: dict[str, Any],
    *,
    now: datetime,
    start: datetime | None,
    minutes: int | None,
    old_slots: Sequence[_Slot],
    new_slots: Sequence[Mapping[str, Any]],
    practitioner_appointments: Sequence[Mapping[str, Any]],
    patient_appointments: Sequence[Mapping[str, Any]],
) -> list[SlotChange]:
    """Move `body` to the new interval with the same checks as a booking; returns the Slots freed and taken."""
    if start is None:
        raise InvalidInput("start", "is required to reschedule")
    start = _aware("start", start)
    old = appointment_interval(current)
    if minutes is None:
        stored = current.get("minutesDuration")
        if isinstance(stored, int) and not isinstance(stored, bool):
            minutes = stored
        elif old is not None and old[1] - old[0] >= timedelta(minutes=1):
            minutes = int((old[1] - old[0]).total_seconds() // 60)
        else:
            raise InvalidInput("minutes", "is required: the appointment has no duration")
    end = _check_time(start, minutes, now)
    if old is not None and old == (start, end):
        raise InvalidInput("start", "is the appointment's current time")
    own = str(current.get("id"))
    practitioner = _actor(current, "Practitioner") or f"the practitioner of Appointment/{own}"
    patient = _actor(current, "Patient") or f"the patient of Appointment/{own}"
    # Slots this appointment holds are released by the move, so the new interval may reuse them.
    future = old is not None and old[0] > now
    held = frozenset(_slot_refs(current)) if future else frozenset()
    stored = _slots(new_slots)
    chain = _slot_chain(stored, start, end, who=practitioner, now=now, held=held) if new_slots else []
    _check_overlaps(practitioner_appointments, start, end, who=practitioner, exclude=own)
    _check_overlaps(patient_appointments, start, end, who=patient, exclude=own)

    body |= {"start": offset_instant(start), "end": offset_instant(end), "minutesDuration": minutes}
    if chain:
        body["slot"] = [{"reference": f"Slot/{s.id}"} for s in chain]
    else:
        body.pop("slot", None)
    kept = frozenset(s.id for s in chain)
    changes = _freed(old_slots, keep=kept) if future else []
    changes += [_slot_change(s, "busy") for s in chain if s.status == "free"]
    return changes


def plan_appointment_change(
    current: Mapping[str, Any],
    action: Action,
    *,
    now: datetime,
    start: datetime | None = None,
    minutes: int | None = None,
    reason: str | None = None,
    current_slots: Sequence[Mapping[str, Any]] = (),
    new_slots: Sequence[Mapping[str, Any]] = (),
    practitioner_appointments: Sequence[Mapping[str, Any]] = (),
    patient_appointments: Sequence[Mapping[str, Any]] = (),
) -> AppointmentChange:
    """The Appointment after `action` (a valueset-appointmentstatus transition or a move) and the Slots it frees
    or takes; everything the action does not touch is kept."""
    if action not in ACTIONS:
        raise InvalidInput("action", "unknown action", ", ".join(ACTIONS))
    if not isinstance(current, Mapping) or current.get("resourceType") != "Appointment":
        raise InvalidInput("current", "must be a stored Appointment")
    fhir_id("current.id", current.get("id"))
    status = current.get("status")
    if not isinstance(status, str):
        raise InvalidInput("current", "the appointment has no status")
    now = _aware("now", now)
    new_status = TRANSITIONS.get(status, {}).get(action)
    if new_status is None:
        raise _refuse(action, status)
    if action != "reschedule" and (start is not None or minutes is not None):
        raise InvalidInput("start", "only a reschedule takes a start or minutes")
    if action != "cancel" and reason is not None:
        raise InvalidInput("reason", "only a cancel takes a reason")
    old_slots = _current_slots(current, current_slots)
    body = _strip_server_meta(current)
    if action == "reschedule":
        changes = _reschedule(
            current,
            body,
            now=now,
            start=start,
            minutes=minutes,
            old_slots=old_slots,
            new_slots=new_slots,
            practitioner_appointments=practitioner_appointments,
            patient_appointments=patient_appointments,
        )
        return AppointmentChange(body, tuple(changes))
    _check_when(action, current, now)
    body["status"] = new_status
    freed: list[SlotChange] = []
    if action == "cancel":
        text = _text("reason", reason, MAX_REASON, multiline=True)
        if text is None:
            raise InvalidInput("reason", "is required to cancel", f"at most {MAX_REASON} characters")
        # appointment.html Appointment.cancelationReason: why it was cancelled (text only; no coded reason given).
        body["cancelationReason"] = {"text": text}
        interval = appointment_interval(current)
        if interval is not None and interval[0] > now:
            freed = _freed(old_slots)
    return AppointmentChange(body, tuple(freed))
