"""Drafts for each write tool: the resource it would write, built from the tool's arguments and the store.

Business rules live in core.writes.scheduling and core.writes.notes (pure); this module reads what they
need (the patient the caller may see, the practitioner's Slots and both calendars) and hands back a
Draft for WriteDesk.propose, which does the policy, validation and risk checks common to every write.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, cast

from fhirgate.core.fhir.definitions import is_supported
from fhirgate.core.writes import effects, notes, scheduling
from fhirgate.errors import Conflict, InvalidInput
from fhirgate.service.guard import Guard
from fhirgate.service.resources import check_id, check_type, not_found
from fhirgate.service.writes import Draft, merge_hidden, new_id, read_visible
from fhirgate.store.contract import FhirStore
from fhirgate.writes.calendar import appointments_around, practitioner_slots, read_bodies

_PRACTITIONER_TYPES = ("Practitioner/", "PractitionerRole/")


def parse_start(value: object, param: str = "start") -> datetime:
    """An ISO 8601 date-time WITH its UTC offset (a booking time without one is ambiguous)."""
    moment = scheduling.parse_time(value)
    if moment is None:
        raise InvalidInput(param, "must be a date-time with a UTC offset", "e.g. 2026-11-23T10:00:00-05:00")
    return moment


def _calendars(store: FhirStore, patient: str, practitioner: str, start: datetime, end: datetime) -> dict[str, Any]:
    """What the scheduling rules need: the practitioner's Slots that day and both participants' Appointments."""
    day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    return {
        "slots": practitioner_slots(store, practitioner, day, day + timedelta(days=1)),
        "practitioner_appointments": appointments_around(store, practitioner, start, end),
        "patient_appointments": appointments_around(store, patient, start, end),
    }


def book(
    store: FhirStore,
    guard: Guard,
    now: datetime,
    *,
    patient_id: str,
    practitioner_id: str,
    start: str,
    minutes: int,
    service_type: str | None = None,
    reason: str | None = None,
    description: str | None = None,
    location_id: str | None = None,
) -> Draft:
    """A new booked Appointment in free Slots of the practitioner, with no overlap for either participant."""
    check_id(patient_id, "patient_id")
    check_id(practitioner_id, "practitioner_id")
    if location_id is not None:
        check_id(location_id, "location_id")
    when = parse_start(start)
    if isinstance(minutes, bool) or not isinstance(minutes, int):
        raise InvalidInput("minutes", "must be an integer", "5 to 480")
    read_visible(store, guard, "Patient", patient_id)
    if store.read("Practitioner", practitioner_id) is None:
        raise not_found("Practitioner", practitioner_id)
    request = scheduling.Booking(
        patient_id=patient_id,
        practitioner_id=practitioner_id,
        start=when,
        minutes=minutes,
        service_type=service_type,
        reason=reason,
        description=description,
        location_id=location_id,
    )
    end = when + timedelta(minutes=max(minutes, 1))
    plan = scheduling.plan_booking(
        request,
        new_id=new_id(),
        now=now,
        **_calendars(store, f"Patient/{patient_id}", f"Practitioner/{practitioner_id}", when, end),
    )
    slots = f", slots {', '.join(s.slot_id for s in plan.slots)}" if plan.slots else ""
    summary = (
        f"Book Patient/{patient_id} with Practitioner/{practitioner_id} at {plan.appointment['start']} for "
        f"{minutes} minutes{slots}."
    )
    return Draft("create", plan.appointment, None, summary)


def change_appointment(
    store: FhirStore,
    guard: Guard,
    now: datetime,
    *,
    appointment_id: str,
    action: str,
    start: str | None = None,
    minutes: int | None = None,
    reason: str | None = None,
) -> Draft:
    """A changed Appointment: rescheduled, cancelled with a reason, arrived, checked in or a no-show."""
    check_id(appointment_id, "appointment_id")
    current = read_visible(store, guard, "Appointment", appointment_id)
    body = current.body
    when = parse_start(start) if start is not None else None
    current_slots = [s.body for s in read_bodies(store, effects.references(body, "slot")).values()]
    found: dict[str, Any] = {"slots": [], "practitioner_appointments": [], "patient_appointments": []}
    practitioners, patients = effects.actors(body, "Practitioner"), effects.actors(body, "Patient")
    if when is not None and practitioners and patients:
        length = minutes if isinstance(minutes, int) and not isinstance(minutes, bool) else 30
        found = _calendars(store, patients[0], practitioners[0], when, when + timedelta(minutes=max(length, 1)))
    change = scheduling.plan_appointment_change(
        body,
        cast(scheduling.Action, action),  # checked by the plan: an unknown action is InvalidInput
        now=now,
        start=when,
        minutes=minutes,
        reason=reason,
        current_slots=current_slots,
        new_slots=found["slots"],
        practitioner_appointments=found["practitioner_appointments"],
        patient_appointments=found["patient_appointments"],
    )
    summary = (
        f"{action} Appointment/{appointment_id} (status {body.get('status')} -> {change.appointment.get('status')})."
    )
    return Draft("update", change.appointment, current, summary)


def clinical_note(
    store: FhirStore,
    guard: Guard,
    now: datetime,
    *,
    patient_id: str,
    text: str,
    title: str | None = None,
    note_type: str = "progress",
    encounter_id: str | None = None,
) -> Draft:
    """A draft DocumentReference (docStatus preliminary) holding the note text, authored by the caller."""
    check_id(patient_id, "patient_id")
    if encounter_id is not None:
        check_id(encounter_id, "encounter_id")
        read_visible(store, guard, "Encounter", encounter_id)
    read_visible(store, guard, "Patient", patient_id)
    user = guard.principal.fhir_user
    author = user if user is not None and user.startswith(_PRACTITIONER_TYPES) else None
    note = notes.draft_note(
        new_id=new_id(),
        patient_id=patient_id,
        text=text,
        now=now,
        author=author,
        title=title,
        note_type=note_type,
        encounter_id=encounter_id,
    )
    return Draft("create", note, None, f"Draft {note_type} note for Patient/{patient_id} (docStatus preliminary).")


def _resource_arg(resource: object) -> dict[str, Any]:
    if not isinstance(resource, Mapping):
        raise InvalidInput("resource", "must be a FHIR resource as a JSON object")
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not is_supported(rtype):
        check_type(str(rtype), "resource.resourceType")
    return copy.deepcopy(dict(resource))


def create(store: FhirStore, guard: Guard, now: datetime, *, resource: object) -> Draft:
    """Any allowed type, created with a server-assigned id (FHIR R4 §3.1.0.6 create ignores a client id)."""
    body = _resource_arg(resource)
    body["id"] = new_id()
    meta = body.get("meta")
    if isinstance(meta, dict):
        meta = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
        body["meta"] = meta
        if not meta:
            body.pop("meta")
    return Draft("create", body, None, f"Create {body['resourceType']}/{body['id']}.")


def update(store: FhirStore, guard: Guard, now: datetime, *, resource: object) -> Draft:
    """A new version of a resource the caller read: `meta.versionId` must be the stored one (If-Match)."""
    body = _resource_arg(resource)
    rtype = str(body["resourceType"])
    rid = body.get("id")
    if not isinstance(rid, str):
        raise InvalidInput("resource.id", "an update needs the id of the resource read")
    check_id(rid, "resource.id")
    meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
    sent = meta.get("versionId") if isinstance(meta, dict) else None
    if not isinstance(sent, str) or not sent:
        raise InvalidInput(
            "resource.meta.versionId", "an update needs the versionId of the version read", "read it first"
        )
    current = read_visible(store, guard, rtype, rid)
    if sent != str(current.version):
        # FHIR R4 §3.1.0.5.3: a version-aware update against a stale version is refused (412).
        raise Conflict(
            f"{rtype}/{rid} changed since you read it: version {current.version} is stored, you sent version "
            f"{sent}; read it again and re-apply your change"
        )
    body = merge_hidden(current.body, body, guard)
    kept = {k: v for k, v in (body.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    if kept:
        body["meta"] = kept
    else:
        body.pop("meta", None)
    return Draft("update", body, current, f"Update {rtype}/{rid} (from version {current.version}).")
