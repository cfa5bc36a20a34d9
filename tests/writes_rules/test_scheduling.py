"""Booking and changing appointments: slot coverage, overlaps, time rules, status transitions, risk and validity."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from fhirgate.core.fhir.validate import validate_resource
from fhirgate.core.writes.risk import assess_one
from fhirgate.core.writes.scheduling import (
    ACTIONS,
    BUSY_STATUSES,
    Action,
    AppointmentChange,
    Booking,
    BookingPlan,
    SlotChange,
    offset_instant,
    plan_appointment_change,
    plan_booking,
)
from fhirgate.errors import Conflict, FhirgateError, InvalidInput

NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
DAY = datetime(2026, 11, 23, tzinfo=UTC)  # a Monday
SECRET = "secret-diagnosis"
NAME = "Jane Secretname"
EST = timezone(timedelta(hours=-5))


def at(hour: int, minute: int = 0, *, day: datetime = DAY, tz: timezone | ZoneInfo = UTC) -> datetime:
    """A time on the test day in `tz`."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)


def slot(
    sid: str, start: datetime, status: str = "free", *, minutes: int = 30, version: str = "4", sched: str = "sch-p1"
) -> dict[str, Any]:
    """A stored Slot as the demo practice writes them, with server meta."""
    return {
        "resourceType": "Slot",
        "id": sid,
        "meta": {"versionId": version, "lastUpdated": "2026-11-01T00:00:00.000Z"},
        "serviceType": [{"text": "Office visit"}],
        "schedule": {"reference": f"Schedule/{sched}"},
        "status": status,
        "start": offset_instant(start),
        "end": offset_instant(start + timedelta(minutes=minutes)),
    }


def morning(status: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Free 30-minute slots 09:00..12:00 (ids s0900 ... s1130), some with another status."""
    status = status or {}
    out = []
    for k in range(6):
        start = at(9) + timedelta(minutes=30 * k)
        sid = f"s{start:%H%M}"
        out.append(slot(sid, start, status.get(sid, "free")))
    return out


def stored_appt(
    aid: str,
    start: datetime,
    minutes: int = 30,
    status: str = "booked",
    *,
    patient: str = "p1",
    practitioner: str = "p-doc",
    slots: tuple[str, ...] = (),
    **extra: Any,
) -> dict[str, Any]:
    """A stored Appointment with a patient display name and a clinical reason (PHI that must never leak)."""
    body: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": aid,
        "meta": {
            "versionId": "7",
            "lastUpdated": "2026-11-01T00:00:00.000Z",
            "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}],
        },
        "status": status,
        "serviceType": [{"text": "Office visit"}],
        "reasonCode": [{"text": SECRET}],
        "start": offset_instant(start),
        "end": offset_instant(start + timedelta(minutes=minutes)),
        "minutesDuration": minutes,
        "created": "2026-11-01",
        "participant": [
            {
                "actor": {"reference": f"Patient/{patient}", "display": NAME},
                "required": "required",
                "status": "accepted",
            },
            {"actor": {"reference": f"Practitioner/{practitioner}"}, "required": "required", "status": "accepted"},
        ],
    }
    if slots:
        body["slot"] = [{"reference": f"Slot/{s}"} for s in slots]
    body.update(extra)
    return body


def booking(start: datetime, minutes: int = 30, **kw: Any) -> Booking:
    return Booking(patient_id="p1", practitioner_id="p-doc", start=start, minutes=minutes, **kw)


def plan(
    start: datetime,
    minutes: int = 30,
    *,
    slots: list[dict[str, Any]] | None = None,
    practitioner: list[dict[str, Any]] | None = None,
    patient: list[dict[str, Any]] | None = None,
    now: datetime = NOW,
    **kw: Any,
) -> BookingPlan:
    return plan_booking(
        booking(start, minutes, **kw),
        new_id="appt-new",
        now=now,
        slots=morning() if slots is None else slots,
        practitioner_appointments=practitioner or [],
        patient_appointments=patient or [],
    )


def valid(resource: dict[str, Any]) -> None:
    validate_resource(resource, mode="full")


@pytest.fixture
def no_phi() -> Callable[[Callable[[], object], type[FhirgateError]], str]:
    """Run a call expected to fail and check its message carries no name, reason or note text."""

    def check(call: Callable[[], object], kind: type[FhirgateError]) -> str:
        with pytest.raises(kind) as info:
            call()
        message = str(info.value)
        assert SECRET not in message and NAME not in message and "Secretname" not in message
        return message

    return check


# -- booking: the Appointment ----------------------------------------------------------------------------------


def test_booking_builds_a_valid_booked_appointment_and_takes_the_slot() -> None:
    result = plan(at(10), service_type="Office visit", description="Follow-up", location_id="loc-1")
    appt = result.appointment
    assert appt["resourceType"] == "Appointment" and appt["id"] == "appt-new" and appt["status"] == "booked"
    assert appt["start"] == "2026-11-23T10:00:00+00:00" and appt["end"] == "2026-11-23T10:30:00+00:00"
    assert appt["minutesDuration"] == 30 and appt["created"] == "2026-11-20"
    assert appt["slot"] == [{"reference": "Slot/s1000"}]
    assert appt["serviceType"] == [{"text": "Office visit"}] and appt["description"] == "Follow-up"
    assert "reasonCode" not in appt and "meta" not in appt
    assert appt["participant"] == [
        {"actor": {"reference": "Patient/p1"}, "required": "required", "status": "accepted"},
        {"actor": {"reference": "Practitioner/p-doc"}, "required": "required", "status": "accepted"},
        {"actor": {"reference": "Location/loc-1"}, "required": "information-only", "status": "accepted"},
    ]
    assert result.slots == (SlotChange("s1000", 4, "free", "busy", result.slots[0].body),)
    body = result.slots[0].body
    assert body["status"] == "busy" and body["id"] == "s1000" and "meta" not in body
    assert body["start"] == "2026-11-23T10:00:00+00:00" and body["schedule"] == {"reference": "Schedule/sch-p1"}
    valid(appt)
    valid(body)


def test_booking_reason_goes_to_reason_code_text() -> None:
    appt = plan(at(10), reason=SECRET).appointment
    assert appt["reasonCode"] == [{"text": SECRET}]
    valid(appt)


def test_booking_without_location_has_two_participants() -> None:
    appt = plan(at(10)).appointment
    assert [p["actor"]["reference"] for p in appt["participant"]] == ["Patient/p1", "Practitioner/p-doc"]
    assert "serviceType" not in appt and "description" not in appt


def test_booking_keeps_other_meta_of_the_slot() -> None:
    slots = morning()
    slots[2]["meta"]["tag"] = [{"system": "http://example.org/tags", "code": "walk-in"}]
    body = plan(at(10), slots=slots).slots[0].body
    assert body["meta"] == {"tag": [{"system": "http://example.org/tags", "code": "walk-in"}]}
    assert slots[2]["meta"]["versionId"] == "4" and slots[2]["status"] == "free"  # the input is not mutated


def test_booking_does_not_mutate_inputs() -> None:
    slots = morning()
    before = [dict(s) for s in slots]
    plan(at(10), slots=slots)
    assert slots == before


# -- booking: time rules ---------------------------------------------------------------------------------------


def test_start_equal_to_now_is_refused() -> None:
    with pytest.raises(InvalidInput) as info:
        plan(at(10), slots=[], now=at(10))
    assert info.value.param == "start" and "future" in info.value.problem


def test_start_in_the_past_is_refused() -> None:
    with pytest.raises(InvalidInput, match="start"):
        plan(at(9), slots=[], now=at(11))


def test_start_one_minute_after_now_is_fine() -> None:
    assert plan(at(10), slots=[], now=at(9, 59)).appointment["start"] == "2026-11-23T10:00:00+00:00"


def test_start_at_most_365_days_ahead() -> None:
    edge = NOW + timedelta(days=365)
    assert plan(edge, slots=[]).appointment["start"] == offset_instant(edge)
    with pytest.raises(InvalidInput, match="365 days"):
        plan(edge + timedelta(minutes=1), slots=[])


@pytest.mark.parametrize("minutes", [5, 480])
def test_minutes_bounds_accepted(minutes: int) -> None:
    assert plan(at(10), minutes, slots=[]).appointment["minutesDuration"] == minutes


@pytest.mark.parametrize("minutes", [4, 481, 0, -30, True])
def test_minutes_out_of_range(minutes: int) -> None:
    with pytest.raises(InvalidInput) as info:
        plan(at(10), minutes, slots=[])
    assert info.value.param == "minutes" and info.value.allowed == "5..480"


def test_naive_start_is_refused() -> None:
    with pytest.raises(InvalidInput, match="UTC offset"):
        plan(datetime(2026, 11, 23, 10, 0), slots=[])


def test_naive_now_is_refused() -> None:
    with pytest.raises(InvalidInput, match="now"):
        plan(at(10), slots=[], now=datetime(2026, 11, 20, 8, 0))


def test_start_with_seconds_is_refused() -> None:
    with pytest.raises(InvalidInput, match="whole minute"):
        plan(at(10).replace(second=30), slots=[])


# -- booking: slots --------------------------------------------------------------------------------------------


def test_sixty_minutes_over_two_consecutive_slots() -> None:
    result = plan(at(10), 60)
    assert result.appointment["slot"] == [{"reference": "Slot/s1000"}, {"reference": "Slot/s1030"}]
    assert [(c.slot_id, c.before, c.after) for c in result.slots] == [
        ("s1000", "free", "busy"),
        ("s1030", "free", "busy"),
    ]
    assert result.appointment["end"] == "2026-11-23T11:00:00+00:00"
    valid(result.appointment)


def test_a_gap_between_slots_is_a_conflict(no_phi: Callable[..., str]) -> None:
    slots = [slot("s1000", at(10)), slot("s1100", at(11))]
    message = no_phi(lambda: plan(at(10), 60, slots=slots, reason=SECRET), Conflict)
    assert message == "no free slot for Practitioner/p-doc at 2026-11-23T10:30+00:00; free that day: 10:00, 11:00"


def test_no_slot_at_start_lists_free_times_that_day() -> None:
    slots = [slot("a", at(9)), slot("b", at(9, 30)), slot("c", at(14)), slot("d", at(9, day=DAY + timedelta(1)))]
    with pytest.raises(Conflict) as info:
        plan(at(10, 15), slots=slots)
    assert str(info.value) == (
        "no free slot for Practitioner/p-doc at 2026-11-23T10:15+00:00; free that day: 09:00, 09:30, 14:00"
    )


def test_free_times_list_at_most_eight_and_only_future_ones() -> None:
    slots = [slot(f"s{k}", at(8) + timedelta(minutes=30 * k)) for k in range(12)]
    with pytest.raises(Conflict) as info:
        plan(at(8, 10), slots=slots, now=at(8, 5))
    assert str(info.value).endswith("free that day: 08:30, 09:00, 09:30, 10:00, 10:30, 11:00, 11:30, 12:00")


def test_free_times_none_when_the_day_is_full() -> None:
    slots = [slot("s1", at(9), "busy")]
    with pytest.raises(Conflict, match="free that day: none"):
        plan(at(10), slots=slots)


def test_booking_shorter_than_the_slot_is_a_conflict() -> None:
    with pytest.raises(Conflict, match="Slot/s1000 ends at 2026-11-23T10:30"):
        plan(at(10), 15)


@pytest.mark.parametrize("status", ["busy", "busy-unavailable", "busy-tentative", "entered-in-error"])
def test_a_slot_not_free_in_the_interval_is_named(status: str, no_phi: Callable[..., str]) -> None:
    slots = morning({"s1030": status})
    message = no_phi(lambda: plan(at(10), 60, slots=slots, reason=SECRET), Conflict)
    assert message == f"Slot/s1030 is {status} at 2026-11-23T10:30+00:00"


def test_busy_slot_ending_exactly_at_start_does_not_block() -> None:
    slots = morning({"s0930": "busy"})
    assert plan(at(10), slots=slots).appointment["slot"] == [{"reference": "Slot/s1000"}]


def test_busy_slot_starting_exactly_at_end_does_not_block() -> None:
    slots = morning({"s1030": "busy-unavailable"})
    assert plan(at(10), slots=slots).slots[0].slot_id == "s1000"


def test_a_practice_without_slots_books_without_slot_references() -> None:
    result = plan(at(10, 5), 20, slots=[])
    assert result.slots == () and "slot" not in result.appointment
    assert result.appointment["end"] == "2026-11-23T10:25:00+00:00"
    valid(result.appointment)


def test_slot_without_a_numeric_version_is_refused() -> None:
    slots = morning()
    slots[2]["meta"] = {}
    with pytest.raises(InvalidInput, match="versionId"):
        plan(at(10), slots=slots)


def test_slots_of_two_schedules_side_by_side_chain() -> None:
    slots = [slot("x", at(10), sched="sch-a"), slot("y", at(10, 30), sched="sch-b")]
    assert [c.slot_id for c in plan(at(10), 60, slots=slots).slots] == ["x", "y"]


# -- booking: overlaps -----------------------------------------------------------------------------------------


def test_practitioner_overlap_by_one_minute_is_a_conflict(no_phi: Callable[..., str]) -> None:
    other = stored_appt("appt-other", at(10), 30, patient="p2")
    message = no_phi(lambda: plan(at(10, 29), 30, slots=[], practitioner=[other], reason=SECRET), Conflict)
    assert message == (
        "Practitioner/p-doc already has Appointment/appt-other (booked) "
        "from 2026-11-23T10:00+00:00 to 2026-11-23T10:30+00:00"
    )


def test_practitioner_appointment_ending_at_start_does_not_block() -> None:
    other = stored_appt("appt-other", at(10), 30, patient="p2")
    assert plan(at(10, 30), slots=[], practitioner=[other]).appointment["status"] == "booked"


def test_appointment_starting_at_end_does_not_block() -> None:
    other = stored_appt("appt-other", at(10, 30), 30)
    assert plan(at(10), slots=[], practitioner=[other], patient=[other]).appointment["id"] == "appt-new"


def test_patient_overlap_is_a_conflict(no_phi: Callable[..., str]) -> None:
    other = stored_appt("appt-mine", at(9, 45), 30, practitioner="p-other")
    message = no_phi(lambda: plan(at(10), slots=[], patient=[other], reason=SECRET), Conflict)
    assert message.startswith("Patient/p1 already has Appointment/appt-mine (booked)")


@pytest.mark.parametrize("status", sorted(BUSY_STATUSES))
def test_every_busy_status_blocks(status: str) -> None:
    with pytest.raises(Conflict, match=f"appt-other \\({status}\\)"):
        plan(at(10), slots=[], practitioner=[stored_appt("appt-other", at(10), status=status)])


@pytest.mark.parametrize("status", ["cancelled", "noshow", "entered-in-error", "fulfilled", "waitlist"])
def test_other_statuses_do_not_block(status: str) -> None:
    other = stored_appt("appt-other", at(10), status=status)
    assert plan(at(10), slots=[], practitioner=[other], patient=[other]).appointment["status"] == "booked"


def test_appointment_with_only_minutes_duration_still_blocks() -> None:
    other = stored_appt("appt-other", at(10), 45)
    del other["end"]
    with pytest.raises(Conflict, match="appt-other"):
        plan(at(10, 30), slots=[], practitioner=[other])


def test_appointment_without_start_does_not_block() -> None:
    other = stored_appt("appt-other", at(10), status="proposed")
    del other["start"], other["end"]
    assert plan(at(10), slots=[], practitioner=[other]).appointment["status"] == "booked"


def test_slots_checked_before_overlaps() -> None:
    other = stored_appt("appt-other", at(10))
    with pytest.raises(Conflict, match="Slot/s1000 is busy"):
        plan(at(10), slots=morning({"s1000": "busy"}), practitioner=[other])


# -- booking: offsets ------------------------------------------------------------------------------------------


def test_offset_of_start_is_preserved_and_slots_match_across_offsets() -> None:
    slots = [slot("u1", at(15)), slot("u2", at(15, 30)), slot("u3", at(19))]  # UTC
    result = plan(at(10, tz=EST), 60, slots=slots)
    assert result.appointment["start"] == "2026-11-23T10:00:00-05:00"
    assert result.appointment["end"] == "2026-11-23T11:00:00-05:00"
    assert [c.slot_id for c in result.slots] == ["u1", "u2"]
    valid(result.appointment)


def test_free_times_shown_in_the_offset_of_start() -> None:
    slots = [slot("u1", at(15)), slot("u3", at(19))]
    with pytest.raises(Conflict) as info:
        plan(at(11, tz=EST), slots=slots)
    assert (
        str(info.value) == "no free slot for Practitioner/p-doc at 2026-11-23T11:00-05:00; free that day: 10:00, 14:00"
    )


def test_duration_counts_elapsed_time_across_a_dst_change() -> None:
    chicago = ZoneInfo("America/Chicago")
    start = datetime(2026, 11, 1, 1, 30, tzinfo=chicago)  # CDT; clocks go back at 02:00
    result = plan(start, 60, slots=[], now=datetime(2026, 10, 30, tzinfo=UTC))
    assert result.appointment["start"] == "2026-11-01T01:30:00-05:00"
    assert result.appointment["end"] == "2026-11-01T01:30:00-06:00"


def test_stored_instants_with_z_and_fractions_are_read() -> None:
    s = slot("z1", at(10))
    s["start"], s["end"] = "2026-11-23T10:00:00.000Z", "2026-11-23T10:30:00Z"
    assert plan(at(10), slots=[s]).slots[0].slot_id == "z1"


# -- booking: input checks -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("patient_id", "p 1"), ("practitioner_id", ""), ("location_id", "x/y"), ("patient_id", "a" * 65)],
)
def test_bad_ids_are_refused(field: str, value: str) -> None:
    kw: dict[str, Any] = {"patient_id": "p1", "practitioner_id": "p-doc", "start": at(10), "minutes": 30}
    kw[field] = value
    with pytest.raises(InvalidInput) as info:
        plan_booking(
            Booking(**kw), new_id="n1", now=NOW, slots=[], practitioner_appointments=[], patient_appointments=[]
        )
    assert info.value.param == field


def test_bad_new_id_is_refused() -> None:
    with pytest.raises(InvalidInput, match="new_id"):
        plan_booking(
            booking(at(10)), new_id="", now=NOW, slots=[], practitioner_appointments=[], patient_appointments=[]
        )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("reason", "   "),
        ("reason", "x" * 501),
        ("reason", "bad\x00byte"),
        ("service_type", "two\nlines"),
        ("service_type", "s" * 201),
        ("description", "d" * 1001),
        ("description", "bell\x07"),
    ],
)
def test_bad_free_text_is_refused_without_echoing_it(field: str, value: str) -> None:
    text: dict[str, Any] = {field: value}
    with pytest.raises(InvalidInput) as info:
        plan(at(10), slots=[], **text)
    assert info.value.param == field
    assert value.strip() not in str(info.value) or not value.strip()


def test_free_text_is_stripped_and_may_span_lines() -> None:
    appt = plan(at(10), slots=[], reason="  cough\n\tfever  ", description="line1\r\nline2").appointment
    assert appt["reasonCode"] == [{"text": "cough\n\tfever"}] and appt["description"] == "line1\r\nline2"


# -- booking: risk ---------------------------------------------------------------------------------------------


def test_booking_create_is_low_risk_administrative() -> None:
    result = plan(at(10), service_type="Office visit", location_id="loc-1")
    risk = assess_one("create", "Appointment", None, result.appointment)
    assert risk.level == "low" and "risk.administrative" in risk.codes
    for change in result.slots:
        current = next(s for s in morning() if s["id"] == change.slot_id)
        slot_risk = assess_one("update", "Slot", current, change.body)
        assert slot_risk.level == "low" and slot_risk.codes == ("risk.administrative",)


def test_booking_with_a_reason_is_high_risk_because_reason_code_is_clinical() -> None:
    risk = assess_one("create", "Appointment", None, plan(at(10), reason=SECRET).appointment)
    assert risk.level == "high" and "risk.clinical_element" in risk.codes


# -- changes: helpers ------------------------------------------------------------------------------------------


def change(current: dict[str, Any], action: Action, *, now: datetime = NOW, **kw: Any) -> AppointmentChange:
    return plan_appointment_change(current, action, now=now, **kw)


def booked_at_ten(minutes: int = 30, status: str = "booked") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A booked appointment 10:00 holding its slots, and the morning's slots as stored."""
    taken = tuple(f"s{at(10) + timedelta(minutes=30 * k):%H%M}" for k in range(minutes // 30))
    slots = morning(dict.fromkeys(taken, "busy"))
    return stored_appt("appt-1", at(10), minutes, status, slots=taken), slots


def held(slots: list[dict[str, Any]], current: dict[str, Any]) -> list[dict[str, Any]]:
    refs = {s["reference"].removeprefix("Slot/") for s in current.get("slot", [])}
    return [s for s in slots if s["id"] in refs]


def assert_kept(current: dict[str, Any], new: dict[str, Any], *touched: str) -> None:
    """Everything but `touched` elements and server meta is as stored."""
    for key in set(current) | set(new):
        if key in touched:
            continue
        if key == "meta":
            assert new["meta"] == {"security": current["meta"]["security"]}
        else:
            assert new.get(key) == current.get(key), key


# -- cancel ----------------------------------------------------------------------------------------------------


def test_cancel_frees_held_slots_and_keeps_everything_else() -> None:
    current, slots = booked_at_ten(60)
    result = change(current, "cancel", reason="patient asked", current_slots=held(slots, current))
    appt = result.appointment
    assert appt["status"] == "cancelled" and appt["cancelationReason"] == {"text": "patient asked"}
    assert_kept(current, appt, "status", "cancelationReason")
    assert appt["slot"] == current["slot"]
    assert [(c.slot_id, c.version, c.before, c.after) for c in result.slots] == [
        ("s1000", 4, "busy", "free"),
        ("s1030", 4, "busy", "free"),
    ]
    assert current["status"] == "booked" and current["meta"]["versionId"] == "7"  # input untouched
    valid(appt)
    for c in result.slots:
        valid(c.body)
    risk = assess_one("update", "Appointment", current, appt)
    assert risk.level == "low" and risk.codes == ("risk.administrative", "risk.status.routine")


def test_cancel_of_a_past_appointment_does_not_free_slots() -> None:
    current, slots = booked_at_ten()
    result = change(current, "cancel", reason="late entry", current_slots=held(slots, current), now=at(11))
    assert result.appointment["status"] == "cancelled" and result.slots == ()


def test_cancel_at_start_time_does_not_free_slots() -> None:
    current, slots = booked_at_ten()
    assert change(current, "cancel", reason="x", current_slots=held(slots, current), now=at(10)).slots == ()


def test_cancel_leaves_unavailable_slots_alone() -> None:
    current, slots = booked_at_ten(60)
    mine = held(slots, current)
    mine[1]["status"] = "busy-unavailable"
    assert [c.slot_id for c in change(current, "cancel", reason="x", current_slots=mine).slots] == ["s1000"]


def test_cancel_frees_tentative_slots() -> None:
    current, slots = booked_at_ten(status="pending")
    mine = held(slots, current)
    mine[0]["status"] = "busy-tentative"
    assert change(current, "cancel", reason="x", current_slots=mine).slots[0].before == "busy-tentative"


@pytest.mark.parametrize("status", ["proposed", "pending", "booked", "arrived", "checked-in", "waitlist"])
def test_cancel_from_every_open_status(status: str) -> None:
    current = stored_appt("appt-1", at(10), status=status)
    result = change(current, "cancel", reason="r")
    assert result.appointment["status"] == "cancelled"
    valid(result.appointment)
    assert assess_one("update", "Appointment", current, result.appointment).level == "low"


@pytest.mark.parametrize("reason", [None, "", "   ", "x" * 501, "a\x1bb"])
def test_cancel_needs_a_reason(reason: str | None) -> None:
    current, _ = booked_at_ten()
    with pytest.raises(InvalidInput) as info:
        change(current, "cancel", reason=reason)
    assert info.value.param == "reason"


def test_cancel_reason_of_500_characters_is_fine() -> None:
    current, _ = booked_at_ten()
    assert len(change(current, "cancel", reason="x" * 500).appointment["cancelationReason"]["text"]) == 500


def test_cancel_replaces_an_earlier_cancelation_reason() -> None:
    current = stored_appt("appt-1", at(10), cancelationReason={"text": "old"})
    assert change(current, "cancel", reason="new").appointment["cancelationReason"] == {"text": "new"}


def test_current_slots_must_be_referenced() -> None:
    current, slots = booked_at_ten()
    with pytest.raises(InvalidInput, match="Slot/s1100 is not referenced"):
        change(current, "cancel", reason="x", current_slots=[slots[4]])


# -- arrived / checked-in --------------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["arrived", "checked-in"])
@pytest.mark.parametrize("now", [at(8), at(10), at(12, 30)])
def test_arrival_within_two_hours_of_the_appointment(action: Action, now: datetime) -> None:
    current, _ = booked_at_ten()
    result = change(current, action, now=now)
    assert result.appointment["status"] == action and result.slots == ()
    assert_kept(current, result.appointment, "status")
    valid(result.appointment)
    risk = assess_one("update", "Appointment", current, result.appointment)
    assert risk.level == "low" and "risk.status.routine" in risk.codes


@pytest.mark.parametrize("now", [at(7, 59), at(12, 31)])
def test_arrival_outside_the_window_is_refused(now: datetime) -> None:
    current, _ = booked_at_ten()
    with pytest.raises(InvalidInput, match="2 h") as info:
        change(current, "arrived", now=now)
    assert info.value.allowed == "2026-11-23T10:00+00:00 to 2026-11-23T10:30+00:00"


def test_checked_in_after_arrived() -> None:
    current = stored_appt("appt-1", at(10), status="arrived")
    assert change(current, "checked-in", now=at(10)).appointment["status"] == "checked-in"


def test_arrived_twice_is_refused() -> None:
    current = stored_appt("appt-1", at(10), status="arrived")
    with pytest.raises(InvalidInput) as info:
        change(current, "arrived", now=at(10))
    assert info.value.problem == "cannot arrived an appointment that is arrived"
    assert info.value.allowed == "cancel, checked-in"


def test_arrival_of_an_appointment_without_start_is_refused() -> None:
    current = stored_appt("appt-1", at(10))
    del current["start"], current["end"]
    with pytest.raises(InvalidInput, match="no start"):
        change(current, "arrived", now=at(10))


# -- noshow ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["booked", "pending"])
def test_noshow_from_start_on(status: str) -> None:
    current = stored_appt("appt-1", at(10), status=status)
    result = change(current, "noshow", now=at(10))
    assert result.appointment["status"] == "noshow"
    valid(result.appointment)
    risk = assess_one("update", "Appointment", current, result.appointment)
    assert risk.level == "low" and "risk.status.routine" in risk.codes


def test_noshow_before_start_is_refused() -> None:
    current, _ = booked_at_ten()
    with pytest.raises(InvalidInput, match="started"):
        change(current, "noshow", now=at(9, 59))


def test_noshow_on_noshow_is_a_no_op_refused() -> None:
    current = stored_appt("appt-1", at(10), status="noshow")
    with pytest.raises(InvalidInput) as info:
        change(current, "noshow", now=at(11))
    assert info.value.param == "action" and info.value.allowed == "none"


def test_noshow_does_not_free_slots() -> None:
    current, slots = booked_at_ten()
    assert change(current, "noshow", now=at(11), current_slots=held(slots, current)).slots == ()


# -- transitions refused ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["cancelled", "fulfilled", "noshow", "entered-in-error"])
@pytest.mark.parametrize("action", ACTIONS)
def test_final_statuses_cannot_be_reopened(status: str, action: Action) -> None:
    current = stored_appt("appt-1", at(10), status=status)
    with pytest.raises(InvalidInput) as info:
        change(current, action, now=at(10), start=at(11) if action == "reschedule" else None)
    assert info.value.param == "action"
    assert info.value.problem == f"cannot {action} an appointment that is {status}"
    assert info.value.allowed == "none"


@pytest.mark.parametrize(
    ("status", "action", "allowed"),
    [
        ("proposed", "arrived", "reschedule, cancel"),
        ("proposed", "noshow", "reschedule, cancel"),
        ("pending", "checked-in", "reschedule, cancel, noshow"),
        ("arrived", "noshow", "cancel, checked-in"),
        ("arrived", "reschedule", "cancel, checked-in"),
        ("checked-in", "arrived", "cancel"),
        ("checked-in", "checked-in", "cancel"),
        ("waitlist", "reschedule", "cancel"),
        ("waitlist", "arrived", "cancel"),
    ],
)
def test_other_transitions_are_refused(status: str, action: Action, allowed: str) -> None:
    current = stored_appt("appt-1", at(10), status=status)
    with pytest.raises(InvalidInput) as info:
        change(current, action, now=at(10), start=at(11) if action == "reschedule" else None)
    assert info.value.allowed == allowed


def test_unknown_action_is_refused() -> None:
    current, _ = booked_at_ten()
    with pytest.raises(InvalidInput, match="unknown action"):
        change(current, "fulfil", now=at(10))  # type: ignore[arg-type]


def test_current_must_be_an_appointment() -> None:
    with pytest.raises(InvalidInput, match="current"):
        change(slot("s1", at(10)), "cancel", reason="x")
    bad = stored_appt("appt-1", at(10))
    del bad["status"]
    with pytest.raises(InvalidInput, match="no status"):
        change(bad, "cancel", reason="x")


def test_reason_only_for_cancel_and_start_only_for_reschedule() -> None:
    current, _ = booked_at_ten()
    with pytest.raises(InvalidInput) as info:
        change(current, "noshow", now=at(11), reason="x")
    assert info.value.param == "reason"
    with pytest.raises(InvalidInput) as info:
        change(current, "cancel", reason="x", start=at(11))
    assert info.value.param == "start"


# -- reschedule ------------------------------------------------------------------------------------------------


def test_reschedule_frees_old_slots_and_takes_new_ones() -> None:
    current, slots = booked_at_ten()
    result = change(current, "reschedule", start=at(11), current_slots=held(slots, current), new_slots=slots)
    appt = result.appointment
    assert appt["status"] == "booked"
    assert appt["start"] == "2026-11-23T11:00:00+00:00" and appt["end"] == "2026-11-23T11:30:00+00:00"
    assert appt["minutesDuration"] == 30 and appt["slot"] == [{"reference": "Slot/s1100"}]
    assert_kept(current, appt, "start", "end", "minutesDuration", "slot")
    assert [(c.slot_id, c.before, c.after) for c in result.slots] == [
        ("s1000", "busy", "free"),
        ("s1100", "free", "busy"),
    ]
    valid(appt)
    for c in result.slots:
        valid(c.body)
    risk = assess_one("update", "Appointment", current, appt)
    assert risk.level == "low" and risk.codes == ("risk.administrative",)


def test_reschedule_onto_its_own_slots_reuses_them() -> None:
    current, slots = booked_at_ten(60)
    result = change(current, "reschedule", start=at(10, 30), current_slots=held(slots, current), new_slots=slots)
    assert result.appointment["slot"] == [{"reference": "Slot/s1030"}, {"reference": "Slot/s1100"}]
    assert [(c.slot_id, c.after) for c in result.slots] == [("s1000", "free"), ("s1100", "busy")]


def test_reschedule_excludes_itself_from_overlaps() -> None:
    current, slots = booked_at_ten(60)
    result = change(
        current,
        "reschedule",
        start=at(10, 30),
        current_slots=held(slots, current),
        new_slots=slots,
        practitioner_appointments=[current],
        patient_appointments=[current],
    )
    assert result.appointment["start"] == "2026-11-23T10:30:00+00:00"


def test_reschedule_onto_another_appointment_is_a_conflict(no_phi: Callable[..., str]) -> None:
    current, _ = booked_at_ten()
    other = stored_appt("appt-2", at(11), patient="p2")
    message = no_phi(
        lambda: change(current, "reschedule", start=at(11), practitioner_appointments=[current, other]), Conflict
    )
    assert message.startswith("Practitioner/p-doc already has Appointment/appt-2 (booked)")
    message = no_phi(lambda: change(current, "reschedule", start=at(11), patient_appointments=[other]), Conflict)
    assert message.startswith("Patient/p1 already has Appointment/appt-2")


def test_reschedule_onto_a_taken_slot_is_a_conflict(no_phi: Callable[..., str]) -> None:
    current, slots = booked_at_ten()
    slots[4]["status"] = "busy"
    message = no_phi(lambda: change(current, "reschedule", start=at(11), new_slots=slots), Conflict)
    assert message == "Slot/s1100 is busy at 2026-11-23T11:00+00:00"


def test_reschedule_keeps_duration_unless_given() -> None:
    current, slots = booked_at_ten(60)
    assert change(current, "reschedule", start=at(9), new_slots=slots).appointment["end"] == offset_instant(at(10))
    result = change(current, "reschedule", start=at(14), minutes=45)
    assert result.appointment["minutesDuration"] == 45 and "slot" not in result.appointment


def test_reschedule_duration_from_start_and_end() -> None:
    current, _ = booked_at_ten(60)
    del current["minutesDuration"]
    assert change(current, "reschedule", start=at(14)).appointment["minutesDuration"] == 60


def test_reschedule_without_any_duration_needs_minutes() -> None:
    current = stored_appt("appt-1", at(10), status="proposed")
    del current["start"], current["end"], current["minutesDuration"]
    with pytest.raises(InvalidInput, match="minutes"):
        change(current, "reschedule", start=at(14))
    result = change(current, "reschedule", start=at(14), minutes=20)
    assert result.appointment["status"] == "proposed" and result.appointment["minutesDuration"] == 20


def test_reschedule_needs_a_start() -> None:
    current, _ = booked_at_ten()
    with pytest.raises(InvalidInput, match="start: is required"):
        change(current, "reschedule")


def test_reschedule_to_the_same_time_is_a_no_op() -> None:
    current, slots = booked_at_ten()
    with pytest.raises(InvalidInput, match="current time"):
        change(current, "reschedule", start=at(10), current_slots=held(slots, current), new_slots=slots)


def test_reschedule_to_the_same_time_in_another_offset_is_a_no_op() -> None:
    current, _ = booked_at_ten()
    with pytest.raises(InvalidInput, match="current time"):
        change(current, "reschedule", start=at(5, tz=EST))


@pytest.mark.parametrize("start", [NOW, NOW - timedelta(days=1), NOW + timedelta(days=366)])
def test_reschedule_checks_time_like_a_booking(start: datetime) -> None:
    current, _ = booked_at_ten()
    with pytest.raises(InvalidInput) as info:
        change(current, "reschedule", start=start)
    assert info.value.param == "start"


def test_reschedule_to_minutes_out_of_range() -> None:
    current, _ = booked_at_ten()
    with pytest.raises(InvalidInput, match="minutes"):
        change(current, "reschedule", start=at(14), minutes=500)


def test_reschedule_of_a_missed_appointment_keeps_old_slots() -> None:
    current, slots = booked_at_ten()
    later = at(10, day=DAY + timedelta(days=1))
    next_day = [slot("t1000", later)]
    result = change(
        current, "reschedule", start=later, now=at(12), current_slots=held(slots, current), new_slots=next_day
    )
    assert [(c.slot_id, c.after) for c in result.slots] == [("t1000", "busy")]


def test_reschedule_to_a_day_without_slots_drops_slot_references() -> None:
    current, slots = booked_at_ten()
    result = change(current, "reschedule", start=at(15), current_slots=held(slots, current))
    assert "slot" not in result.appointment
    assert [(c.slot_id, c.after) for c in result.slots] == [("s1000", "free")]


@pytest.mark.parametrize("status", ["proposed", "pending"])
def test_reschedule_keeps_an_unconfirmed_status(status: str) -> None:
    current = stored_appt("appt-1", at(10), status=status)
    assert change(current, "reschedule", start=at(14)).appointment["status"] == status


def test_reschedule_preserves_the_new_offset() -> None:
    current, _ = booked_at_ten()
    result = change(current, "reschedule", start=at(13, tz=EST))
    assert result.appointment["start"] == "2026-11-23T13:00:00-05:00"
    assert result.appointment["end"] == "2026-11-23T13:30:00-05:00"
    valid(result.appointment)


# -- no PHI ----------------------------------------------------------------------------------------------------


def test_no_error_message_carries_phi(no_phi: Callable[..., str]) -> None:
    current, slots = booked_at_ten()
    calls: list[tuple[Callable[[], object], type[FhirgateError]]] = [
        (lambda: plan(at(10), slots=morning({"s1000": "busy"}), reason=SECRET), Conflict),
        (lambda: plan(at(10, 15), reason=SECRET), Conflict),
        (lambda: plan(at(10), slots=[], patient=[current], reason=SECRET), Conflict),
        (lambda: plan(at(10), slots=[], now=at(11), reason=SECRET), InvalidInput),
        (lambda: plan(at(10), slots=[], reason=SECRET + "\x00"), InvalidInput),
        (lambda: change(current, "cancel", reason=SECRET * 100), InvalidInput),
        (lambda: change(current, "noshow"), InvalidInput),
        (lambda: change(current, "arrived"), InvalidInput),
        (lambda: change(current, "reschedule", start=at(10, 15), new_slots=slots), Conflict),
        (lambda: change(stored_appt("x", at(10), status="cancelled"), "cancel", reason=SECRET), InvalidInput),
    ]
    for call, kind in calls:
        no_phi(call, kind)
