"""Calendar reads for scheduling writes: a practitioner's Slots and anyone's Appointments around a time.

These read the store directly (not through a caller's policy): they decide whether a booking conflicts,
and what they find leaves only as ids in a conflict message. Searches use the indexed FHIR search
parameters (Appointment `actor` + `date`, Schedule `actor`, Slot `schedule` + `start`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from fhirgate.core.fhir.search import parse_search
from fhirgate.store.contract import FhirStore, Resource, StoredResource

# Appointments longer than this are not looked for when checking overlaps (a day's clinic at most).
MAX_APPOINTMENT = timedelta(hours=12)
_PAGE = 100  # the search page limit (core.fhir.search.MAX_COUNT)


def _instant(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _all(store: FhirStore, resource_type: str, params: list[tuple[str, str]]) -> list[StoredResource]:
    out: list[StoredResource] = []
    offset = 0
    while True:
        page = store.search(parse_search(resource_type, [*params, ("_count", str(_PAGE)), ("_offset", str(offset))]))
        out.extend(page.matches)
        if page.next_offset is None or len(out) >= 20 * _PAGE:
            return out
        offset = page.next_offset


def appointments_around(store: FhirStore, actor: str, start: datetime, end: datetime) -> list[Resource]:
    """Appointments with `actor` (Type/id) as a participant that start within 12 h before `end`."""
    params = [("actor", actor), ("date", "ge" + _instant(start - MAX_APPOINTMENT)), ("date", "lt" + _instant(end))]
    return [s.body for s in _all(store, "Appointment", params)]


def practitioner_slots(store: FhirStore, practitioner: str, start: datetime, end: datetime) -> list[Resource]:
    """Slots of the practitioner's Schedules starting in [start, end) (empty when they keep no Schedule)."""
    schedules = _all(store, "Schedule", [("actor", practitioner)])
    out: list[Resource] = []
    for schedule in schedules:
        params = [("schedule", schedule.ref), ("start", "ge" + _instant(start)), ("start", "lt" + _instant(end))]
        out.extend(s.body for s in _all(store, "Slot", params))
    out.sort(key=lambda slot: str(slot.get("start")))
    return out


def read_bodies(store: FhirStore, refs: tuple[str, ...]) -> dict[str, StoredResource]:
    """The stored current versions of `Type/id` refs that exist."""
    found: dict[str, StoredResource] = {}
    for ref in refs:
        rtype, _, rid = ref.partition("/")
        stored = store.read(rtype, rid)
        if stored is not None:
            found[ref] = stored
    return found
