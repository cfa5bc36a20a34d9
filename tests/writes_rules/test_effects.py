"""Slot effects and overlaps of an Appointment write (core/writes/effects.py): what the applier re-checks."""

from __future__ import annotations

from datetime import UTC, datetime

from fhirgate.core.writes import effects

START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
END = datetime(2026, 11, 23, 10, 30, tzinfo=UTC)


def _appt(aid: str, status: str = "booked", **times: object) -> dict[str, object]:
    return {"resourceType": "Appointment", "id": aid, "status": status, **times}


def test_overlap_counts_an_appointment_with_only_a_duration() -> None:
    """The applier's in-transaction check and the proposal-time rules read intervals the same way."""
    only_duration = _appt("a1", start="2026-11-23T10:15:00+00:00", minutesDuration=30)
    assert effects.overlapping([only_duration], START, END) == ["a1"]


def test_overlap_ignores_free_statuses_itself_and_touching_intervals() -> None:
    cancelled = _appt("a1", "cancelled", start="2026-11-23T10:00:00+00:00", end="2026-11-23T10:30:00+00:00")
    me = _appt("a2", start="2026-11-23T10:00:00+00:00", end="2026-11-23T10:30:00+00:00")
    before = _appt("a3", start="2026-11-23T09:30:00+00:00", end="2026-11-23T10:00:00+00:00")
    assert effects.overlapping([cancelled, me, before], START, END, exclude="a2") == []


def test_slot_transitions_take_new_and_release_old() -> None:
    old = _appt("a1", slot=[{"reference": "Slot/s1"}, {"reference": "Slot/s2"}])
    moved = _appt("a1", slot=[{"reference": "Slot/s2"}, {"reference": "Slot/s3"}])
    assert effects.slot_transitions(old, moved) == (("Slot/s3",), ("Slot/s1",))
    cancelled = {**old, "status": "cancelled"}
    assert effects.slot_transitions(old, cancelled) == ((), ("Slot/s1", "Slot/s2"))
    assert effects.slot_transitions(None, old) == (("Slot/s1", "Slot/s2"), ())


def test_time_checks_only_when_time_is_newly_taken() -> None:
    booked = _appt(
        "a1",
        start="2026-11-23T10:00:00+00:00",
        end="2026-11-23T10:30:00+00:00",
        participant=[{"actor": {"reference": "Patient/p1"}}, {"actor": {"reference": "Practitioner/d1"}}],
    )
    assert effects.time_checks({**booked, "status": "arrived"}, booked) is None
    moved = {**booked, "start": "2026-11-23T11:00:00+00:00", "end": "2026-11-23T11:30:00+00:00"}
    checks = effects.time_checks(moved, booked)
    assert checks is not None and set(checks[0]) == {"Patient/p1", "Practitioner/d1"}
