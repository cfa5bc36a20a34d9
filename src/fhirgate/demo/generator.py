"""Generate the demo practice as batches of FHIR R4 resources, and write it to a store.

Determinism: the same (patients, seed, today) gives byte-identical output. Every random draw comes from a
`random.Random` seeded from (seed, patient number), nothing reads the clock, ids are counters; so the output
for patient k does not depend on how many patients follow it, and memory stays flat as the count grows.
"""

from __future__ import annotations

import datetime as dt
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import Progress

from fhirgate.demo.billing import bill, coverage
from fhirgate.demo.catalog import CONDITIONS
from fhirgate.demo.chart import Chart, EncounterFacts
from fhirgate.demo.clinical import (
    acute_condition,
    acute_medication,
    addressed,
    allergies,
    care_team,
    chronic_medications,
    consents,
    encounter_resource,
    problem_resources,
)
from fhirgate.demo.elements import LABEL_PSY, LABEL_R, Json
from fhirgate.demo.health import plan_health
from fhirgate.demo.measurements import immunizations, labs, screenings, vitals
from fhirgate.demo.notes import INJECTIONS, note_resource
from fhirgate.demo.people import make_person, patient_resource
from fhirgate.demo.practice import build_practice, practice_resources
from fhirgate.demo.schedule import SlotBook, appointment_resource, plan_visits
from fhirgate.errors import InvalidInput

if TYPE_CHECKING:
    from fhirgate.store.contract import FhirStore

MAX_PATIENTS = 1_000_000
BATCH_SIZE = 2000
RTF_PATIENTS = (4, 29)
OPTOUT_PATIENTS = (11, 23)
INJECTION_SLOTS = (8, 33)  # patient number mod 50
INJECTION_LIMIT = 500  # only patients below this number, so "a few" stays a few at any size
LAPSED_HIGH_VALUE_TOTAL = 1500.0
SUMMARY_ID_CAP = 200


@dataclass(slots=True)
class DemoSummary:
    """What a demo run produced: counts per type plus ids of the records tests and reports look for."""

    patients: int
    seed: int
    today: dt.date
    counts: dict[str, int] = field(default_factory=dict)
    security_labels: dict[str, int] = field(default_factory=dict)
    injection_note_ids: list[str] = field(default_factory=list)
    rtf_note_ids: list[str] = field(default_factory=list)
    optout_patient_ids: list[str] = field(default_factory=list)
    # Lapsed patients (no visit for over a year, nothing booked) who had billed over $1,500; first 200 only.
    lapsed_high_value_patient_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        """All resources written."""
        return sum(self.counts.values())


def _check(patients: object, seed: object, today: object) -> None:
    if isinstance(patients, bool) or not isinstance(patients, int) or not 1 <= patients <= MAX_PATIENTS:
        raise InvalidInput("patients", "must be a whole number in range", f"1 to {MAX_PATIENTS}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidInput("seed", "must be an integer")
    if today is not None and (isinstance(today, dt.datetime) or not isinstance(today, dt.date)):
        raise InvalidInput("today", "must be a datetime.date", "a date such as 2025-06-30")


class PracticeGenerator:
    """One demo run: yields batches and records the notable ids as it goes."""

    def __init__(self, *, patients: int, seed: int, today: dt.date | None = None, batch_size: int = BATCH_SIZE) -> None:
        _check(patients, seed, today)
        self.patients, self.seed = patients, seed
        self.today = today if today is not None else dt.date.today()
        self.batch_size = max(1, batch_size)
        self.practice = build_practice(patients, seed)
        self.slots = SlotBook(self.practice, self.today, seed)
        optout = [i for i in OPTOUT_PATIENTS if i < patients]
        self.optout = set(optout or [patients - 1])
        self.summary = DemoSummary(patients, seed, self.today)

    def batches(self) -> Iterator[list[Json]]:
        """Practice resources first, then patients in batches of about `batch_size`, then Slots."""
        yield practice_resources(self.practice, self.today)
        buffer: list[Json] = []
        for i in range(self.patients):
            buffer.extend(self._patient(i))
            if len(buffer) >= self.batch_size:
                yield buffer
                buffer = []
        if buffer:
            yield buffer
        slots = self.slots.resources()
        for k in range(0, len(slots), self.batch_size):
            yield slots[k : k + self.batch_size]

    def _patient(self, i: int) -> list[Json]:
        rng = random.Random(f"{self.seed}:patient:{i}")  # noqa: S311 - synthetic data, determinism wanted
        person = make_person(rng, i, self.practice, self.today)
        health = plan_health(rng, person, self.today)
        visits = plan_visits(rng, person, health, self.practice, self.today, self.slots)
        chart = Chart(
            person,
            health,
            flu_propensity=rng.choice((0.1, 0.5, 0.8, 0.95)),
            covid_propensity=rng.choice((0.0, 0.2, 0.6)),
        )
        out: list[Json] = [patient_resource(rng, person)]
        out += coverage(rng, chart)
        out += problem_resources(chart, visits)
        out += allergies(rng, chart)
        out += chronic_medications(chart, visits)
        fulfilled = [v for v in visits if v.status == "fulfilled"]
        inject = fulfilled[-1] if fulfilled and i < INJECTION_LIMIT and i % 50 in INJECTION_SLOTS else None
        rtf = fulfilled[0] if fulfilled and i in RTF_PATIENTS else None
        billed = 0.0
        for v in visits:
            out.append(appointment_resource(v, person))
            if v.status != "fulfilled":
                continue
            start = v.start + dt.timedelta(minutes=rng.randint(0, 15))
            f = EncounterFacts(
                v,
                start,
                start + dt.timedelta(minutes=v.service.minutes + rng.randint(-5, 10)),
                problems=addressed(chart, v),
            )
            labels = chart.visit_labels(f.problems)
            if v.kind == "behavioral":
                codes = {c for _, c, _ in labels}
                labels += tuple(x for x in (LABEL_R, LABEL_PSY) if x[1] not in codes)
            f.labels = labels
            records: list[Json] = []
            if v.acute:
                records.append(acute_condition(rng, chart, f))
                records += acute_medication(rng, chart, f)
            if v.kind != "behavioral":
                records += vitals(rng, chart, f)
                records += labs(rng, chart, f)
                records += immunizations(rng, chart, f)
            records += screenings(rng, chart, f)
            out.append(encounter_resource(f, person.id))
            out += records
            fmt = "rtf" if v is rtf else "html" if rng.random() < 0.04 else "plain"
            text = INJECTIONS[(i // 50) % len(INJECTIONS)] if v is inject else None
            note = note_resource(rng, chart, f, fmt, text)
            out.append(note)
            if text:
                self.summary.injection_note_ids.append(note["id"])
            if fmt == "rtf":
                self.summary.rtf_note_ids.append(note["id"])
            diagnoses = [(p.cond.icd10, p.cond.icd_display) for p in f.problems]
            if v.acute and f.acute_id:
                diagnoses.insert(0, (CONDITIONS[v.acute].icd10, CONDITIONS[v.acute].icd_display))
            claim, total = bill(chart, f, diagnoses)
            out.append(claim)
            billed += total
        out += care_team(chart, visits)
        optout = i in self.optout
        out += consents(chart, optout=optout)
        if optout:
            self.summary.optout_patient_ids.append(person.id)
        lapsed = self.summary.lapsed_high_value_patient_ids
        if person.engagement == "lapsed" and billed >= LAPSED_HIGH_VALUE_TOTAL and len(lapsed) < SUMMARY_ID_CAP:
            lapsed.append(person.id)
        return out


def generate_practice(*, patients: int, seed: int, today: dt.date | None = None) -> Iterator[list[Json]]:
    """Yield the demo practice as batches of FHIR R4 resources (practice first, then patients, then Slots).

    `today` anchors every date; it defaults to the real current date, so pass it for reproducible output.
    """
    return PracticeGenerator(patients=patients, seed=seed, today=today).batches()


def write_practice(
    store: FhirStore, *, patients: int, seed: int, today: dt.date | None = None, progress: bool = False
) -> DemoSummary:
    """Generate the demo practice and write every batch through `store.write`; returns what was written."""
    began = time.perf_counter()
    gen = PracticeGenerator(patients=patients, seed=seed, today=today)
    counts: Counter[str] = Counter()
    labels: Counter[str] = Counter()
    bar = None
    if progress:
        bar = Progress(transient=True, console=_stderr_console())
        bar.start()
        task = bar.add_task("Generating demo practice", total=patients)
    try:
        for batch in gen.batches():
            store.write(batch)
            for r in batch:
                counts[r["resourceType"]] += 1
                for label in r.get("meta", {}).get("security", ()):
                    labels[label["code"]] += 1
            if bar is not None:
                bar.update(task, completed=counts["Patient"])
    finally:
        if bar is not None:
            bar.stop()
    refresh = getattr(store, "refresh_statistics", None)  # a server store's planner statistics (PostgreSQL)
    if callable(refresh):
        refresh()
    gen.summary.counts = dict(sorted(counts.items()))
    gen.summary.security_labels = dict(sorted(labels.items()))
    gen.summary.seconds = round(time.perf_counter() - began, 3)
    return gen.summary


def _stderr_console() -> Console:
    return Console(file=sys.stderr)
