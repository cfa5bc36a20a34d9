"""Report parameters: typed specs with defaults and bounds, and the resolution of periods to date ranges.

Dates are calendar dates (YYYY-MM-DD); a period is [start, end) with `end` exclusive. Shortcuts such as
`last_month` are resolved against an explicit `today`, so the same call always means the same dates.
Every problem is an InvalidInput naming the parameter and what is allowed.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fhirgate.errors import InvalidInput

# FHIR R4 §2.24.0.1 "id": the only shape of id ever inlined into report SQL.
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
MAX_PERIOD_DAYS = 366
MAX_TEXT = 200
DEFAULT_PERIOD = "last_30_days"
PERIODS = (
    "last_7_days",
    "last_30_days",
    "last_90_days",
    "this_week",
    "last_week",
    "this_month",
    "last_month",
    "this_quarter",
    "last_quarter",
    "this_year",
    "last_year",
)
PERIOD_PARAMS = ("period", "start", "end")


@dataclass(frozen=True, slots=True)
class Param:
    """One report parameter: name, kind (int, date, id, choice, text), default, bounds and a description.

    A `text` value (a condition or lab named in words or by a code) never reaches SQL: the service resolves it
    to codes first (ReportSpec.resolves) and the builder inlines only those.
    """

    name: str
    kind: str
    description: str
    default: Any = None
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()

    def allowed(self) -> str:
        """What the parameter accepts, in words."""
        if self.kind == "int":
            return f"an integer from {self.minimum} to {self.maximum}"
        if self.kind == "date":
            return "a date YYYY-MM-DD"
        if self.kind == "id":
            return "a FHIR id such as prac-004 (or Practitioner/prac-004)"
        if self.kind == "text":
            return f"words or a code, at most {MAX_TEXT} characters"
        return ", ".join(self.choices)

    def parse(self, value: Any) -> Any:
        """The validated value (strings from the command line are converted), else InvalidInput."""
        if value is None:
            return self.default
        if self.kind == "int":
            number = _integer(value)
            if number is None or not (self.minimum or 0) <= number <= (self.maximum or number):
                raise InvalidInput(self.name, f"{_show(value)} is not valid", self.allowed())
            return number
        if not isinstance(value, str):
            raise InvalidInput(self.name, "must be a string", self.allowed())
        value = value.strip()
        if self.kind == "text":
            if not value or len(value) > MAX_TEXT:
                raise InvalidInput(self.name, "must be non-empty words or a code", self.allowed())
            return value
        if self.kind == "date":
            return parse_date(self.name, value)
        if self.kind == "id":
            value = value.split("/", 1)[1] if value.startswith("Practitioner/") else value
            if not FHIR_ID.fullmatch(value):
                raise InvalidInput(self.name, "is not a FHIR id", self.allowed())
            return value
        if value not in self.choices:
            raise InvalidInput(self.name, f"{_show(value)} is not one of the choices", self.allowed())
        return value

    def as_dict(self) -> dict[str, Any]:
        """The parameter as described to the model and the CLI."""
        out: dict[str, Any] = {"name": self.name, "type": self.kind, "description": self.description}
        out["default"] = self.default
        if self.kind == "int":
            out["minimum"], out["maximum"] = self.minimum, self.maximum
        if self.choices:
            out["choices"] = list(self.choices)
        return out


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,9}\s*", value):
        return int(value)
    return None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_date(name: str, value: Any) -> dt.date:
    """A calendar date from YYYY-MM-DD text, else InvalidInput naming `name` and the format."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str) and _DATE.fullmatch(value.strip()):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise InvalidInput(name, "is not a valid date", "a calendar date YYYY-MM-DD, e.g. 2025-03-01")


@dataclass(frozen=True, slots=True)
class Period:
    """A half-open range of local calendar dates [start, end), and how it was chosen."""

    start: dt.date
    end: dt.date
    label: str

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def previous(self) -> Period:
        """The period of equal length just before this one."""
        return Period(self.start - dt.timedelta(days=self.days), self.start, f"the {self.days} days before")

    def as_dict(self) -> dict[str, str]:
        """ISO bounds for a definition block."""
        return {"start": self.start.isoformat(), "end_exclusive": self.end.isoformat(), "chosen_by": self.label}


def _month_start(day: dt.date, back: int = 0) -> dt.date:
    index = day.year * 12 + day.month - 1 - back
    return dt.date(index // 12, index % 12 + 1, 1)


def shortcut(name: str, today: dt.date) -> Period:
    """The dates of a `period` shortcut relative to `today` (weeks start on Monday; today is included
    in this_* periods and in last_N_days, whose range ends after today)."""
    tomorrow = today + dt.timedelta(days=1)
    monday = today - dt.timedelta(days=today.weekday())
    quarter = _month_start(today, (today.month - 1) % 3)
    ranges = {
        "last_7_days": (tomorrow - dt.timedelta(days=7), tomorrow),
        "last_30_days": (tomorrow - dt.timedelta(days=30), tomorrow),
        "last_90_days": (tomorrow - dt.timedelta(days=90), tomorrow),
        "this_week": (monday, monday + dt.timedelta(days=7)),
        "last_week": (monday - dt.timedelta(days=7), monday),
        "this_month": (_month_start(today), _month_start(today, -1)),
        "last_month": (_month_start(today, 1), _month_start(today)),
        "this_quarter": (quarter, _month_start(quarter, -3)),
        "last_quarter": (_month_start(quarter, 3), quarter),
        "this_year": (dt.date(today.year, 1, 1), dt.date(today.year + 1, 1, 1)),
        "last_year": (dt.date(today.year - 1, 1, 1), dt.date(today.year, 1, 1)),
    }
    start, end = ranges[name]
    return Period(start, end, f"period={name} with today={today.isoformat()}")


def resolve_period(raw: Mapping[str, Any], today: dt.date, *, default: str = DEFAULT_PERIOD) -> Period:
    """The period from `period` or from `start` and `end` (both, end exclusive), else the default shortcut."""
    name, start, end = raw.get("period"), raw.get("start"), raw.get("end")
    if name is not None and (start is not None or end is not None):
        raise InvalidInput("period", "give either period or start/end, not both", "period alone, or start and end")
    if name is not None:
        if not isinstance(name, str) or name.strip() not in PERIODS:
            raise InvalidInput("period", f"{_show(name)} is not a known period", ", ".join(PERIODS))
        return shortcut(name.strip(), today)
    if start is None and end is None:
        return shortcut(default, today)
    if start is None or end is None:
        missing = "start" if start is None else "end"
        raise InvalidInput(missing, "start and end go together", "both start and end (YYYY-MM-DD, end exclusive)")
    first, stop = parse_date("start", start), parse_date("end", end)
    if stop <= first:
        raise InvalidInput("end", "must be after start (end is exclusive)", "an end date later than start")
    if (stop - first).days > MAX_PERIOD_DAYS:
        raise InvalidInput(
            "end", f"the period spans {(stop - first).days} days", f"at most {MAX_PERIOD_DAYS} days per report"
        )
    return Period(first, stop, "start/end")


def add_months(day: dt.date, months: int) -> dt.date:
    """`day` moved by `months` calendar months (negative goes back), clamped to the month's last day."""
    index = day.year * 12 + day.month - 1 + months
    year, month = index // 12, index % 12 + 1
    for candidate in (day.day, 30, 29, 28):
        try:
            return dt.date(year, month, min(day.day, candidate))
        except ValueError:
            continue
    return dt.date(year, month, 28)  # pragma: no cover - 28 always exists
