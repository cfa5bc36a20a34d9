"""A patient's chart while it is generated: id counters, what was already done, and per-visit facts.

Measurements, notes and bills all read the same EncounterFacts, so a note's vitals match the Observations
and a claim's lines match the labs and procedures actually recorded.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from fhirgate.demo.catalog import Label, MedDef
from fhirgate.demo.health import Health, Problem
from fhirgate.demo.people import Person
from fhirgate.demo.schedule import Visit


@dataclass(slots=True)
class EncounterFacts:
    """What happened at one fulfilled visit."""

    visit: Visit
    start: dt.datetime
    end: dt.datetime
    problems: list[Problem] = field(default_factory=list)
    acute_id: str | None = None
    vitals: dict[str, float] = field(default_factory=dict)
    labs: dict[str, float] = field(default_factory=dict)
    panels: list[str] = field(default_factory=list)
    procedures: list[str] = field(default_factory=list)
    vaccines: list[str] = field(default_factory=list)
    meds_started: list[MedDef] = field(default_factory=list)
    phq9: int | None = None
    labels: tuple[Label, ...] = ()


@dataclass(slots=True)
class Chart:
    """Per-patient generation state."""

    person: Person
    health: Health
    counters: dict[str, int] = field(default_factory=dict)
    last_panel: dict[str, dt.date] = field(default_factory=dict)
    vaccines: set[str] = field(default_factory=set)
    flu_propensity: float = 0.5
    covid_propensity: float = 0.3

    def next_id(self, prefix: str) -> str:
        """A deterministic id `prefix-<patient>-<n>` unique within the output."""
        n = self.counters.get(prefix, 0)
        self.counters[prefix] = n + 1
        return f"{prefix}-{self.person.index:06d}-{n:03d}"

    def due(self, panel: str, day: dt.date, gap_days: int) -> bool:
        """Whether `panel` was last done at least `gap_days` before `day` (or never)."""
        last = self.last_panel.get(panel)
        return last is None or (day - last).days >= gap_days

    def visit_labels(self, problems: list[Problem]) -> tuple[Label, ...]:
        """The union of the security labels of the problems a visit addressed, in a stable order."""
        seen: dict[tuple[str, str], Label] = {}
        for p in problems:
            for label in p.cond.labels:
                seen.setdefault((label[0], label[1]), label)
        return tuple(seen.values())
