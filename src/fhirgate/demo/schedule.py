"""Visits for one patient (past and booked Appointments) and the practice's bookable Slots.

No-shows depend on the clinician, the weekday (Mondays and Fridays worst) and the patient, so scheduling
reports have real differences to find. Future appointments in the next three weeks occupy Slots, so free/busy
agrees with what is booked.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass, field

from fhirgate.demo.catalog import ACUTE_KEYS
from fhirgate.demo.elements import Json, concept, instant, ref
from fhirgate.demo.health import Health, Problem
from fhirgate.demo.offerings import SERVICES, ServiceDef
from fhirgate.demo.people import Person
from fhirgate.demo.practice import (
    Clinician,
    Practice,
    category_concept,
    location_id,
    service_concept,
    specialty_concept,
)

# Monday..Friday multipliers of a clinician's base no-show rate.
WEEKDAY_NOSHOW = (1.6, 0.85, 0.7, 0.85, 1.5)
CANCEL_RATE = 0.06
SLOT_DAYS = 21
SLOT_MINUTES = 30
SESSIONS = ((8, 12), (13, 17))
# HL7 appointment-cancellation-reason codes (R4 ValueSet appointment-cancellation-reason).
CANCEL_REASONS = (
    ("pat", "Patient", 30),
    ("pat-crs", "Patient: Canceled via automated reminder system", 20),
    ("pat-mt", "Patient: Missed Transportation", 10),
    ("pat-swl", "Patient: Still waiting on lab results", 5),
    ("prov", "Provider", 15),
    ("prov-pers", "Provider: Personal", 10),
    ("oth-weath", "Other: Weather", 10),
)
APPT_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0276"
APPT_TYPES = {
    "CHECKUP": "A routine check-up, such as an annual physical",
    "FOLLOWUP": "A follow up visit from a previous appointment",
    "WALKIN": "A previously unscheduled walk-in visit",
    "ROUTINE": "Routine appointment - default if not valued",
}
COMPLAINTS = {
    "uri": "cough and congestion",
    "sinusitis": "sinus pressure",
    "bronchitis": "cough for 10 days",
    "pharyngitis": "sore throat",
    "uti": "painful urination",
    "otitis": "ear pain",
    "ankle_sprain": "twisted ankle",
    "covid": "fever and cough",
}


@dataclass(slots=True)
class Visit:
    """One appointment of the patient, and what it is for."""

    kind: str
    start: dt.datetime
    clinician: Clinician
    service: ServiceDef
    problems: list[Problem] = field(default_factory=list)
    acute: str | None = None
    status: str = "fulfilled"
    cancel: tuple[str, str] | None = None
    slots: list[str] = field(default_factory=list)
    n: int = 0
    pid: int = 0

    @property
    def end(self) -> dt.datetime:
        return self.start + dt.timedelta(minutes=self.service.minutes)

    @property
    def id(self) -> str:
        return f"appt-{self.pid:06d}-{self.n:03d}"

    @property
    def encounter_id(self) -> str:
        return f"enc-{self.pid:06d}-{self.n:03d}"


class SlotBook:
    """The bookable 30-minute Slots of every clinician for the next three weeks, and which are taken."""

    def __init__(self, practice: Practice, today: dt.date, seed: int) -> None:
        rng = random.Random(f"{seed}:slots")  # noqa: S311 - synthetic data
        self.practice = practice
        self.days = [today + dt.timedelta(days=d) for d in range(1, SLOT_DAYS + 1)]
        self.days = [d for d in self.days if d.weekday() < 5]
        self.per_day = sum(h1 - h0 for h0, h1 in SESSIONS) * 60 // SLOT_MINUTES
        self.off: set[tuple[int, int]] = {
            (c.index, rng.randrange(len(self.days))) for c in practice.clinicians if rng.random() < 0.5
        }
        self.taken: set[tuple[int, int, int]] = set()

    def _start(self, day: int, k: int) -> dt.datetime:
        per_session = (SESSIONS[0][1] - SESSIONS[0][0]) * 60 // SLOT_MINUTES
        h0 = SESSIONS[0][0] if k < per_session else SESSIONS[1][0]
        minutes = (k % per_session) * SLOT_MINUTES
        return dt.datetime.combine(self.days[day], dt.time(h0 + minutes // 60, minutes % 60))

    def slot_id(self, clinician: int, day: int, k: int) -> str:
        return f"slot-{clinician:03d}-{self.days[day].strftime('%m%d')}-{k:02d}"

    def book(
        self, rng: random.Random, clinician: Clinician, wanted: dt.date, minutes: int
    ) -> tuple[dt.datetime, list[str]] | None:
        """Take consecutive free Slots on `wanted` or the next open day; None when the window is full."""
        need = max(1, math.ceil(minutes / SLOT_MINUTES))
        per_session = self.per_day // len(SESSIONS)
        first = next((i for i, d in enumerate(self.days) if d >= wanted), None)
        if first is None:
            return None
        for day in range(first, len(self.days)):
            if (clinician.index, day) in self.off:
                continue
            starts = [k for k in range(self.per_day) if k % per_session + need <= per_session]
            offset = rng.randrange(len(starts))
            for k in starts[offset:] + starts[:offset]:
                keys = [(clinician.index, day, k + j) for j in range(need)]
                if not any(key in self.taken for key in keys):
                    self.taken.update(keys)
                    return self._start(day, k), [self.slot_id(clinician.index, day, k + j) for j in range(need)]
        return None

    def resources(self) -> list[Json]:
        """Every Slot with status free, busy (booked) or busy-unavailable (clinician away)."""
        out: list[Json] = []
        for c in self.practice.clinicians:
            svc = SERVICES[c.specialty.services[0]]
            for day in range(len(self.days)):
                for k in range(self.per_day):
                    start = self._start(day, k)
                    status = (
                        "busy-unavailable"
                        if (c.index, day) in self.off
                        else "busy"
                        if (c.index, day, k) in self.taken
                        else "free"
                    )
                    out.append(
                        {
                            "resourceType": "Slot",
                            "id": self.slot_id(c.index, day, k),
                            "serviceCategory": [category_concept(svc.category)],
                            "serviceType": [service_concept(SERVICES[key]) for key in c.specialty.services],
                            "specialty": [specialty_concept(c.specialty)],
                            "schedule": ref("Schedule", c.schedule_id),
                            "status": status,
                            "start": instant(start),
                            "end": instant(start + dt.timedelta(minutes=SLOT_MINUTES)),
                        }
                    )
        return out


def _weekday(day: dt.date) -> dt.date:
    if day.weekday() == 5:
        return day - dt.timedelta(days=1)
    if day.weekday() == 6:
        return day + dt.timedelta(days=1)
    return day


def _annual_service(person: Person, day: dt.date) -> str:
    age = person.age_at(day)
    return "well-child" if age < 18 else "wellness-medicare" if age >= 65 else "physical-adult"


def _pick(rng: random.Random, practice: Practice, specialty: str, fallback: Clinician) -> Clinician:
    pool = practice.by_specialty.get(specialty)
    return pool[rng.randrange(len(pool))] if pool else fallback


def _plan(rng: random.Random, person: Person, health: Health, practice: Practice, end: dt.date) -> list[Visit]:
    pcp = person.pcp
    start = person.history_start
    visits: list[Visit] = []
    first_kind = "new" if person.engagement == "new" else "annual"
    first_svc = "new-patient" if first_kind == "new" else _annual_service(person, start)
    visits.append(Visit(first_kind, dt.datetime.combine(start, dt.time()), pcp, SERVICES[first_svc]))
    day = start + dt.timedelta(days=rng.randint(300, 420))
    while day <= end:
        visits.append(Visit("annual", dt.datetime.combine(day, dt.time()), pcp, SERVICES[_annual_service(person, day)]))
        if person.age_at(day) < 2:
            half = day + dt.timedelta(days=180)
            visits.append(Visit("annual", dt.datetime.combine(half, dt.time()), pcp, SERVICES["well-child"]))
        if person.female and 21 <= person.age_at(day) < 65 and rng.random() < 0.3:
            gyn = _pick(rng, practice, "obgyn", pcp)
            visits.append(
                Visit(
                    "specialist",
                    dt.datetime.combine(day + dt.timedelta(days=rng.randint(20, 150)), dt.time()),
                    gyn,
                    SERVICES["well-woman"],
                )
            )
        day += dt.timedelta(days=rng.randint(335, 395))
    for p in health.problems:
        if p.diagnosed > start:
            visits.append(
                Visit("chronic", dt.datetime.combine(p.diagnosed, dt.time()), pcp, SERVICES["chronic-care"], [p])
            )
        cond = p.cond
        cadence = cond.followup_days
        if not cadence or cadence >= 365:
            continue
        clinician, service = pcp, SERVICES["chronic-care"]
        if cond.specialty in ("psychiatry", "counseling") and (cond.labels or rng.random() < 0.4):
            clinician = _pick(rng, practice, cond.specialty, pcp)
            service = SERVICES["med-management" if cond.specialty == "psychiatry" else "psychotherapy"]
        elif cond.specialty in ("cardiology", "endocrinology") and rng.random() < 0.35:
            clinician = _pick(rng, practice, cond.specialty, pcp)
            service = SERVICES["cardiology-consult" if cond.specialty == "cardiology" else "endocrine-visit"]
            cadence = 240
        kind = "behavioral" if clinician.specialty.behavioral else "specialist" if clinician is not pcp else "chronic"
        day = p.diagnosed + dt.timedelta(days=rng.randint(14, cadence))
        count = 0
        while day <= end and count < 24:
            svc = SERVICES["psych-eval"] if count == 0 and service.key == "med-management" else service
            visits.append(Visit(kind, dt.datetime.combine(day, dt.time()), clinician, svc, [p]))
            day += dt.timedelta(days=int(cadence * rng.uniform(0.8, 1.25)))
            count += 1
    years = max(0.1, (min(end, person.last_active) - start).days / 365.0)
    age = person.age_at(start)
    rate = 1.6 if age < 6 else 1.0 if age < 18 else 0.7
    acute_count = sum(1 for _ in range(int(rate * years * 3)) if rng.random() < 1 / 3)  # ~Binomial(3rt, 1/3)
    for _ in range(acute_count):
        day = start + dt.timedelta(days=rng.randint(0, int(years * 365)))
        acute = rng.choice(ACUTE_KEYS)
        if acute == "otitis" and age >= 12:
            acute = "uri"
        if acute == "covid" and day.year < 2020:
            acute = "bronchitis"
        same_day = [
            c for c in practice.clinicians if c.specialty.primary_care and (c.specialty.key != "pediatrics" or age < 18)
        ]
        clinician = pcp if rng.random() < 0.5 else same_day[rng.randrange(len(same_day))]
        visits.append(Visit("acute", dt.datetime.combine(day, dt.time()), clinician, SERVICES["same-day"], acute=acute))
    return visits


def plan_visits(
    rng: random.Random, person: Person, health: Health, practice: Practice, today: dt.date, slots: SlotBook
) -> list[Visit]:
    """All appointments of one patient in date order: past ones resolved, future ones booked."""
    bookable = person.engagement in ("active", "new") and person.deceased is None
    end = today + dt.timedelta(days=120) if bookable else person.last_active
    planned = _plan(rng, person, health, practice, end)
    out: list[Visit] = []
    for v in planned:
        day = _weekday(v.start.date())
        if day < person.history_start or day > end or (v.acute and day >= today):
            continue
        minute = 15 * rng.randint(0, (17 * 60 - 8 * 60 - v.service.minutes) // 15)
        v.start = dt.datetime.combine(day, dt.time(8 + minute // 60, minute % 60))
        if day >= today:
            ahead = (day - today).days
            if rng.random() > (0.9 if ahead <= 30 else 0.6 if ahead <= 90 else 0.35):
                continue
            v.status = "booked"
            if ahead >= 1 and ahead <= SLOT_DAYS:
                taken = slots.book(rng, v.clinician, day, v.service.minutes)
                if taken:
                    v.start, v.slots = taken
                else:
                    v.start += dt.timedelta(days=SLOT_DAYS + 7)
                    v.start = dt.datetime.combine(_weekday(v.start.date()), v.start.time())
            out.append(v)
            continue
        out.append(v)
        _resolve(rng, person, v)
        if v.status != "fulfilled" and v.kind != "acute" and rng.random() < 0.6:
            again = _weekday(day + dt.timedelta(days=rng.randint(5, 21)))
            if again < today:
                retry = Visit(
                    v.kind,
                    dt.datetime.combine(again, v.start.time()),
                    v.clinician,
                    v.service,
                    list(v.problems),
                    v.acute,
                )
                _resolve(rng, person, retry)
                out.append(retry)
    out.sort(key=lambda x: (x.start, x.kind))
    for n, v in enumerate(out):
        v.n, v.pid = n, person.index
    return out


def _resolve(rng: random.Random, person: Person, v: Visit) -> None:
    if rng.random() < CANCEL_RATE:
        code, display, _ = rng.choices(CANCEL_REASONS, weights=[w for *_, w in CANCEL_REASONS])[0]
        v.status, v.cancel = "cancelled", (code, display)
        return
    p = v.clinician.noshow_rate * WEEKDAY_NOSHOW[v.start.weekday()] * person.noshow_factor
    if v.kind == "acute":
        p *= 0.3
    v.status = "noshow" if rng.random() < min(p, 0.6) else "fulfilled"


def appointment_resource(v: Visit, person: Person) -> Json:
    """The Appointment (FHIR R4 §12.10); start/end always present (invariant app-3)."""
    appt_type = {"annual": "CHECKUP", "acute": "WALKIN", "new": "ROUTINE"}.get(v.kind, "FOLLOWUP")
    created = v.start - dt.timedelta(days=1 if v.kind == "acute" else 21, hours=3)
    patient_status = "declined" if v.cancel and v.cancel[0].startswith("pat") else "accepted"
    body: Json = {
        "resourceType": "Appointment",
        "id": v.id,
        "status": v.status,
        "serviceCategory": [category_concept(v.service.category)],
        "serviceType": [service_concept(v.service)],
        "specialty": [specialty_concept(v.clinician.specialty)],
        "appointmentType": concept(APPT_TYPE, appt_type, APPT_TYPES[appt_type]),
        "description": v.service.name,
        "start": instant(v.start),
        "end": instant(v.end),
        "minutesDuration": v.service.minutes,
        "created": instant(created),
        "participant": [
            {"actor": ref("Patient", person.id, person.name), "required": "required", "status": patient_status},
            {
                "actor": ref("Practitioner", v.clinician.id, v.clinician.display),
                "required": "required",
                "status": "accepted",
            },
            {
                "actor": ref("Location", location_id(v.clinician.location)),
                "required": "information-only",
                "status": "accepted",
            },
        ],
    }
    if v.cancel:
        body["cancelationReason"] = concept(
            "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason", *v.cancel
        )
    reasons = [ref("Condition", p.id) for p in v.problems if p.recorded and p.recorded <= v.start.date()]
    if reasons:
        body["reasonReference"] = reasons
    if v.acute:
        body["reasonCode"] = [{"text": COMPLAINTS[v.acute]}]
    if v.slots:
        body["slot"] = [ref("Slot", s) for s in v.slots]
    return body
