"""A patient's health over time: chronic problems with onset dates, and the physiology their measurements follow.

Values are correlated with problems (diabetes raises HbA1c, treatment lowers it) so that questions like
"which diabetics are uncontrolled" have meaningful answers in the demo data.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

from fhirgate.demo.catalog import CONDITIONS, ConditionDef
from fhirgate.demo.people import Person


@dataclass(slots=True)
class Problem:
    """One chronic condition of a patient: when it began and when the practice diagnosed it."""

    cond: ConditionDef
    id: str
    onset: dt.date
    diagnosed: dt.date
    meds: tuple[str, ...] = ()
    # Set once visits are known: the encounter that recorded it and its date.
    encounter_id: str | None = None
    recorded: dt.date | None = None


@dataclass(slots=True)
class Health:
    """Chronic problems plus baseline physiology (adult height, BMI, blood pressure, lab set points)."""

    problems: list[Problem] = field(default_factory=list)
    height_cm: float = 170.0
    bmi: float = 24.0
    sbp: float = 120.0
    dbp: float = 76.0
    hr: float = 72.0
    a1c: float = 5.3
    ldl: float = 110.0
    egfr: float = 90.0
    tsh: float = 2.0

    def has(self, key: str, on: dt.date | None = None) -> bool:
        """Whether the patient has problem `key` (diagnosed by `on`, when given)."""
        return any(p.cond.key == key and (on is None or p.diagnosed <= on) for p in self.problems)

    def treated(self, key: str, on: dt.date) -> bool:
        """Whether a drug for problem `key` had been started by `on`."""
        return any(p.cond.key == key and p.meds and p.diagnosed <= on for p in self.problems)

    def active_on(self, day: dt.date) -> list[Problem]:
        return [p for p in self.problems if p.diagnosed <= day]


def _prevalence(key: str, age: int, female: bool) -> float:
    adult = age >= 18
    old = age >= 65
    table = {
        "hypertension": 0.6 if old else 0.33 if age >= 40 else 0.08 if adult else 0.01,
        "hyperlipidemia": 0.45 if old else 0.28 if age >= 40 else 0.06 if adult else 0.0,
        "diabetes": 0.24 if old else 0.13 if age >= 40 else 0.03 if adult else 0.003,
        "obesity": 0.38 if adult else 0.15 if age >= 6 else 0.0,
        "asthma": 0.08 if age >= 3 else 0.0,
        "depression": 0.12 if adult else 0.05 if age >= 12 else 0.0,
        "anxiety": 0.09 if adult else 0.04 if age >= 10 else 0.0,
        "gerd": 0.12 if adult else 0.0,
        "hypothyroidism": (0.10 if female else 0.03) if adult else 0.0,
        "ckd3": 0.14 if old else 0.03 if age >= 40 else 0.0,
        "copd": 0.09 if old else 0.04 if age >= 40 else 0.0,
        "afib": 0.09 if old else 0.0,
        "oa_knee": 0.2 if age >= 55 else 0.0,
        "back_pain": 0.08 if adult else 0.0,
        "rhinitis": 0.12 if age >= 3 else 0.0,
        "migraine": (0.12 if female else 0.05) if 14 <= age <= 65 else 0.0,
        "vitd": 0.06 if adult else 0.0,
        "osteoporosis": 0.2 if (female and old) else 0.0,
        "tobacco": 0.0,  # from smoking status
        "aud": 0.03 if adult else 0.0,
        "oud": 0.008 if 18 <= age <= 70 else 0.0,
        "hiv": 0.003 if adult else 0.0,
        "bipolar": 0.012 if age >= 16 else 0.0,
        "ptsd": 0.025 if adult else 0.0,
    }
    return table.get(key, 0.0)


def plan_health(rng: random.Random, person: Person, today: dt.date) -> Health:
    """Draw chronic problems (with onset and diagnosis dates) and baseline physiology for one patient."""
    age = person.age_at(person.last_active)
    female = person.female
    keys = [k for k, c in CONDITIONS.items() if c.chronic and rng.random() < _prevalence(k, age, female)]
    forced = person.forced
    if "lapsed_high_value" in forced:
        keys += ["diabetes", "hypertension", "hyperlipidemia"]
    for trait in ("hiv", "oud", "aud", "bipolar", "ptsd", "depression"):
        if trait in forced:
            keys.append(trait)
    if person.smoking == "current" and age >= 16:
        keys.append("tobacco")
    if "diabetes" not in keys and age >= 30 and rng.random() < 0.12:
        keys.append("prediabetes")
    health = Health()
    span = max(1, (person.last_active - person.history_start).days)
    for n, key in enumerate(dict.fromkeys(keys)):
        cond = CONDITIONS[key]
        min_onset = person.birth + dt.timedelta(days=365 * (2 if key == "asthma" else 12))
        if rng.random() < 0.7 or person.engagement == "new":
            onset = person.history_start - dt.timedelta(days=rng.randint(60, 365 * 12))
            onset = max(onset, min(min_onset, person.history_start))
            diagnosed = person.history_start
        else:
            diagnosed = person.history_start + dt.timedelta(days=rng.randint(30, max(31, span - 30)))
            onset = diagnosed - dt.timedelta(days=rng.randint(0, 120))
        onset = max(onset, person.birth)
        meds: tuple[str, ...] = ()
        if cond.meds and rng.random() < 0.85:
            meds = cond.meds[:1] if len(cond.meds) == 1 else tuple(rng.sample(cond.meds, rng.randint(1, 2)))
        health.problems.append(Problem(cond, f"cond-{person.index:06d}-{n:02d}", onset, diagnosed, meds))
    _physiology(rng, person, health, age)
    return health


def _physiology(rng: random.Random, person: Person, h: Health, age: int) -> None:
    male = person.gender == "male"
    h.height_cm = rng.gauss(176.0, 7.0) if male else rng.gauss(162.5, 6.5)
    if h.has("obesity"):
        h.bmi = rng.uniform(30.2, 42.0) if age >= 18 else rng.uniform(24.0, 31.0)
    else:
        h.bmi = rng.uniform(19.0, 29.5) if age >= 18 else rng.uniform(14.5, 21.0)
    h.sbp = rng.uniform(140, 164) if h.has("hypertension") else 104 + 0.3 * max(0, age - 18) + rng.gauss(0, 6)
    h.dbp = rng.uniform(86, 99) if h.has("hypertension") else 66 + 0.1 * max(0, age - 18) + rng.gauss(0, 4)
    h.hr = rng.uniform(64, 84) + (20 if age < 6 else 8 if age < 13 else 0)
    h.a1c = (
        rng.uniform(7.3, 10.2)
        if h.has("diabetes")
        else rng.uniform(5.7, 6.4)
        if h.has("prediabetes")
        else rng.uniform(4.7, 5.6)
    )
    h.ldl = rng.uniform(145, 200) if h.has("hyperlipidemia") else rng.uniform(68, 128)
    h.egfr = rng.uniform(33, 58) if h.has("ckd3") else max(62.0, 118 - 0.7 * age + rng.gauss(0, 8))
    h.tsh = rng.uniform(6.0, 12.5) if h.has("hypothyroidism") else rng.uniform(0.6, 3.8)


def height_at(adult_cm: float, age_years: float) -> float:
    """Height on a simple growth curve reaching the adult height at 18."""
    if age_years >= 18:
        return adult_cm
    if age_years < 2:
        child = 50 + 25 * age_years - 6.5 * age_years * age_years
    elif age_years < 12:
        child = 87 + 6.0 * (age_years - 2)
    else:
        child = 147 + (adult_cm - 147) * (age_years - 12) / 6
    return min(adult_cm, child * adult_cm / 170)
