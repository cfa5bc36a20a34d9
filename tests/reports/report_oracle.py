"""Independent computations of every report in plain Python over raw FHIR JSON (never the view tables).

Dates: each record's local wall-clock time in its own offset, via datetime.fromisoformat (so a period
[start, end) holds records whose local date d has start <= d < end).
"""

from __future__ import annotations

import datetime as _dt
import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]
NOT_BILLED = {"draft", "cancelled", "entered-in-error"}
UPCOMING = {"proposed", "pending", "booked", "arrived", "checked-in", "waitlist"}


def local(value: str) -> dt.datetime:
    """The local wall-clock time of a FHIR dateTime (offset dropped after parsing)."""
    if len(value) == 10:
        return dt.datetime.combine(dt.date.fromisoformat(value), dt.time())
    return dt.datetime.fromisoformat(value).replace(tzinfo=None)


def day(value: str) -> dt.date:
    return local(value).date()


def months_back(today: dt.date, months: int) -> dt.date:
    y, m = divmod(today.year * 12 + today.month - 1 - months, 12)
    d = today.day
    while True:
        try:
            return dt.date(y, m + 1, d)
        except ValueError:
            d -= 1


def ref_id(reference: str | None, rtype: str) -> str | None:
    if reference and reference.startswith(rtype + "/"):
        return reference.split("/", 1)[1]
    return None


@dataclass
class Appt:
    id: str
    patient: str | None
    practitioner: str | None
    status: str
    service: str | None
    service_name: str | None
    start: str
    end: str | None
    minutes: int | None
    created: str | None
    reason: str | None

    @property
    def date(self) -> dt.date:
        return day(self.start)


class Raw:
    """The raw resources by type, with appointments pre-parsed from FHIR JSON."""

    def __init__(self, by_type: dict[str, list[Json]]) -> None:
        self.by_type = by_type
        self.appts = [self._appt(a) for a in by_type.get("Appointment", [])]

    @staticmethod
    def _appt(a: Json) -> Appt:
        actors = [p.get("actor", {}).get("reference") for p in a.get("participant", [])]
        svc = (a.get("serviceType") or [{}])[0]
        reason = (a.get("cancelationReason") or {}).get("coding", [{}])[0].get("code")
        return Appt(
            a["id"],
            next((x for x in (ref_id(r, "Patient") for r in actors) if x), None),
            next((x for x in (ref_id(r, "Practitioner") for r in actors) if x), None),
            a["status"],
            (svc.get("coding") or [{}])[0].get("code"),
            svc.get("text"),
            a["start"],
            a.get("end"),
            a.get("minutesDuration"),
            a.get("created"),
            reason,
        )

    def active_patients(self) -> dict[str, Json]:
        out = {}
        for p in self.by_type["Patient"]:
            dead = p.get("deceasedBoolean") is True or "deceasedDateTime" in p
            if p.get("active") is True and not dead:
                out[p["id"]] = p
        return out


def in_period(d: dt.date, start: dt.date, end: dt.date) -> bool:
    return start <= d < end


def rate(n: int, d: int) -> float | None:
    return round(n / d, 4) if d else None


# -- reports ----------------------------------------------------------------------------------------


def no_show(raw: Raw, start: dt.date, end: dt.date) -> dict[tuple[str, Any], tuple[int, int, int, int]]:
    """(dimension, key) -> (noshow, fulfilled, previous noshow, previous fulfilled)."""
    prev = start - (end - start)
    acc: dict[tuple[str, Any], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for a in raw.appts:
        if a.status not in ("noshow", "fulfilled"):
            continue
        d = a.date
        if in_period(d, start, end):
            slot = 0 if a.status == "noshow" else 1
        elif in_period(d, prev, start):
            slot = 2 if a.status == "noshow" else 3
        else:
            continue
        t = local(a.start)
        names = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
        for key in (
            ("total", None),
            ("provider", a.practitioner),
            ("service", a.service),
            ("weekday", names[t.weekday()]),
            ("hour", t.hour),
        ):
            acc[key][slot] += 1
    return {k: (v[0], v[1], v[2], v[3]) for k, v in acc.items()}


def patients_not_seen(
    raw: Raw, today: dt.date, days: int, practitioner: str | None = None, attribution: str = "last_visit"
) -> dict[str, str | None]:
    """patient id -> last fulfilled visit (FHIR text) before the window, for every active patient not seen."""
    cutoff = today - dt.timedelta(days=days)
    fulfilled: dict[str, list[Appt]] = defaultdict(list)
    for a in raw.appts:
        if a.status == "fulfilled" and a.patient:
            fulfilled[a.patient].append(a)
    out: dict[str, str | None] = {}
    for pid, p in raw.active_patients().items():
        visits = fulfilled.get(pid, [])
        if any(cutoff <= a.date <= today for a in visits):
            continue
        before = [a for a in visits if a.date < cutoff]
        last = max(before, key=lambda a: local(a.start)) if before else None
        if practitioner:
            if attribution == "last_visit" and (last is None or last.practitioner != practitioner):
                continue
            gp = ref_id((p.get("generalPractitioner") or [{}])[0].get("reference"), "Practitioner")
            if attribution == "general_practitioner" and gp != practitioner:
                continue
        out[pid] = last.start if last else None
    return out


def billed(raw: Raw) -> dict[str, float]:
    """patient id -> lifetime billed (claim item net + invoice base price), excluding non-bills."""
    total: dict[str, float] = defaultdict(float)
    for c in raw.by_type["Claim"]:
        if c.get("status") in NOT_BILLED:
            continue
        pid = ref_id(c.get("patient", {}).get("reference"), "Patient")
        for item in c.get("item", []):
            total[pid or ""] += float(item.get("net", {}).get("value", 0))
    for inv in raw.by_type["Invoice"]:
        if inv.get("status") in NOT_BILLED:
            continue
        pid = ref_id(inv.get("subject", {}).get("reference"), "Patient")
        for line in inv.get("lineItem", []):
            base = [pc for pc in line.get("priceComponent", []) if pc.get("type") == "base"]
            if base:
                total[pid or ""] += float(base[0].get("amount", {}).get("value", 0))
    return dict(total)


def lapsed(raw: Raw, today: dt.date, months: int, floor: int = 0) -> list[tuple[str, float]]:
    """(patient, billed) for active patients with no appointment started/created since the cutoff, billed desc."""
    cutoff = months_back(today, months)
    recent = {a.patient for a in raw.appts if a.date >= cutoff or (a.created is not None and day(a.created) >= cutoff)}
    money = billed(raw)
    rows = [
        (pid, round(money.get(pid, 0.0), 2))
        for pid in raw.active_patients()
        if pid not in recent and money.get(pid, 0.0) > 0 and money.get(pid, 0.0) >= floor
    ]
    return sorted(rows, key=lambda r: (-r[1], r[0]))


def service_volume(raw: Raw, start: dt.date, end: dt.date) -> dict[str, tuple[int, int, int, int, float]]:
    """service code -> (appointments, fulfilled, noshow, cancelled, revenue of the service's own lines)."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    names: dict[str, str] = {}
    for a in raw.appts:
        if a.status == "entered-in-error" or not in_period(a.date, start, end):
            continue
        counts[a.service or ""]["all"] += 1
        counts[a.service or ""][a.status] += 1
        names[a.service or ""] = a.service_name or ""
    revenue: dict[str, float] = defaultdict(float)
    for c in raw.by_type["Claim"]:
        if c.get("status") in NOT_BILLED or not in_period(day(c["billablePeriod"]["start"]), start, end):
            continue
        for item in c.get("item", []):
            revenue[item["productOrService"].get("text", "")] += float(item["net"]["value"])
    for inv in raw.by_type["Invoice"]:
        if inv.get("status") in NOT_BILLED or not in_period(day(inv["date"]), start, end):
            continue
        for line in inv.get("lineItem", []):
            base = [pc for pc in line.get("priceComponent", []) if pc.get("type") == "base"]
            revenue[line["chargeItemCodeableConcept"].get("text", "")] += float(base[0]["amount"]["value"])
    return {
        svc: (c["all"], c["fulfilled"], c["noshow"], c["cancelled"], round(revenue.get(names[svc], 0.0), 2))
        for svc, c in counts.items()
    }


def utilization(raw: Raw, start: dt.date, end: dt.date) -> dict[str | None, tuple[int, int, int, int, int, int]]:
    """practitioner -> (appointments, fulfilled, noshow, cancelled, booked minutes, fulfilled minutes)."""
    out: dict[str | None, list[int]] = defaultdict(lambda: [0] * 6)
    for a in raw.appts:
        if a.status == "entered-in-error" or not in_period(a.date, start, end):
            continue
        minutes = a.minutes
        if minutes is None and a.end:
            minutes = round(
                (dt.datetime.fromisoformat(a.end) - dt.datetime.fromisoformat(a.start)).total_seconds() / 60
            )
        r = out[a.practitioner]
        r[0] += 1
        r[1] += a.status == "fulfilled"
        r[2] += a.status == "noshow"
        r[3] += a.status == "cancelled"
        if a.status != "cancelled":
            r[4] += minutes or 0
        if a.status == "fulfilled":
            r[5] += minutes or 0
    return {k: (v[0], v[1], v[2], v[3], v[4], v[5]) for k, v in out.items()}


def cancellations(raw: Raw, start: dt.date, end: dt.date) -> tuple[int, int, Counter[str | None], Counter[str]]:
    """(cancelled, appointments, by reason, cancelled by ISO week Monday)."""
    n = total = 0
    reasons: Counter[str | None] = Counter()
    weeks: Counter[str] = Counter()
    for a in raw.appts:
        if a.status == "entered-in-error" or not in_period(a.date, start, end):
            continue
        total += 1
        if a.status == "cancelled":
            n += 1
            reasons[a.reason] += 1
            weeks[(a.date - dt.timedelta(days=a.date.weekday())).isoformat()] += 1
    return n, total, reasons, weeks


def new_vs_returning(raw: Raw, start: dt.date, end: dt.date) -> tuple[set[str], set[str], int, int]:
    """(new patients, returning patients, their visits in the period)."""
    in_p: dict[str, int] = Counter()
    before: set[str] = set()
    for a in raw.appts:
        if a.status != "fulfilled" or not a.patient:
            continue
        if in_period(a.date, start, end):
            in_p[a.patient] += 1
        elif a.date < start:
            before.add(a.patient)
    new = {p for p in in_p if p not in before}
    ret = {p for p in in_p if p in before}
    return new, ret, sum(in_p[p] for p in new), sum(in_p[p] for p in ret)


def diabetes_gaps(raw: Raw, today: dt.date, months: int = 6) -> tuple[set[str], dict[str, str | None]]:
    """(active diabetics, gap patient -> last HbA1c effective or None)."""
    cutoff = months_back(today, months)
    active = raw.active_patients()
    dm: set[str] = set()
    for c in raw.by_type["Condition"]:
        status = (c.get("clinicalStatus") or {}).get("coding", [{}])[0].get("code")
        verif = (c.get("verificationStatus") or {}).get("coding", [{}])[0].get("code")
        if status not in ("active", "recurrence", "relapse") or verif in ("refuted", "entered-in-error"):
            continue
        codes = [
            cd.get("code", "")
            for cd in c.get("code", {}).get("coding", [])
            if cd.get("system") == "http://hl7.org/fhir/sid/icd-10-cm"
        ]
        pid = ref_id(c.get("subject", {}).get("reference"), "Patient")
        if pid in active and any("E11" <= code < "E12" for code in codes):
            dm.add(pid)
    last: dict[str, str] = {}
    for o in raw.by_type["Observation"]:
        if o.get("status") not in ("final", "amended", "corrected") or "effectiveDateTime" not in o:
            continue
        if not any(
            cd.get("system") == "http://loinc.org" and cd.get("code") == "4548-4"
            for cd in o.get("code", {}).get("coding", [])
        ):
            continue
        pid = ref_id(o.get("subject", {}).get("reference"), "Patient")
        if pid and (pid not in last or local(o["effectiveDateTime"]) > local(last[pid])):
            last[pid] = o["effectiveDateTime"]
    gaps = {p: last.get(p) for p in dm if p not in last or day(last[p]) < cutoff}
    return dm, gaps


# The anchor date of the report tests' demo practice (shared by conftest and the test modules).
DEMO_TODAY = _dt.date(2026, 11, 21)
