"""The report registry: what a report is (name, description, params, views, builder) and how it runs.

A report is a predefined, parameterized SELECT over the practice views. Its builder receives a
ReportContext whose `query` runs SQL through whatever executes it for the caller (the SQL sandbox under
the caller's policy in production), and returns rows, a one-sentence headline and the exact definition.
Values reach SQL only as validated literals (dates, integers, FHIR ids); the sandbox takes no bindings.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fhirgate.analytics.reports.params import (
    FHIR_ID,
    PERIOD_PARAMS,
    PERIODS,
    Param,
    Period,
    parse_date,
    resolve_period,
)
from fhirgate.errors import InvalidInput

Row = dict[str, Any]
QueryFn = Callable[[str, int], list[Row]]  # (sql, max rows) -> rows as dicts

MAX_LIMIT = 200
TODAY = Param("today", "date", "The date 'now' is taken as (YYYY-MM-DD); default: the server's current date.")
LIMIT = Param("limit", "int", "Rows to return (the headline counts all).", 20, 1, MAX_LIMIT)
OFFSET = Param("offset", "int", "Rows to skip, for the next page (offset + limit).", 0, 0, 10_000)
PERIOD_DOC = (
    "Period: `period` (one of " + ", ".join(PERIODS) + ") or `start` and `end` (YYYY-MM-DD, end exclusive, "
    "at most 366 days); default last_30_days. Shortcuts are relative to `today`."
)


def sql_date(day: dt.date) -> str:
    """A date as a SQL text literal (ISO digits and dashes only)."""
    return "'" + day.isoformat() + "'"


def sql_id(value: str) -> str:
    """A validated FHIR id as a SQL text literal."""
    if not FHIR_ID.fullmatch(value):  # validated by Param.parse; re-checked before inlining
        raise InvalidInput("id", "is not a FHIR id", "[A-Za-z0-9-.]{1,64}")
    return "'" + value + "'"


def rate(numerator: int, denominator: int) -> float | None:
    """numerator/denominator rounded to 4 places; None when the denominator is 0."""
    return round(numerator / denominator, 4) if denominator else None


def pct(value: float | None) -> str:
    """A rate as a percentage for headlines ('n/a' when undefined)."""
    return "n/a" if value is None else f"{value * 100:.1f}%"


@dataclass(frozen=True, slots=True)
class CodeSet:
    """The codes a `text` param was resolved to by the service layer (analytics imports no terminology).

    `codes` are (system URI, code) pairs, ICD-10-CM already expanded below `icd_roots`; `rule` says in words
    what the caller's text was read as, for the report's definition.
    """

    text: str
    codes: tuple[tuple[str, str], ...]
    icd_roots: tuple[str, ...]
    rule: str

    def by_system(self, system: str) -> list[str]:
        """The codes of one system, in order."""
        return [code for s, code in self.codes if s == system]


@dataclass(slots=True)
class ReportContext:
    """One run: validated params, today, the period (when the report takes one) and the query function.

    `codes` holds, for each param a report resolves (ReportSpec.resolves), the codes the service found; the
    caller cannot set it directly.
    """

    params: dict[str, Any]
    today: dt.date
    period: Period | None
    query: QueryFn
    available: frozenset[str]
    _names: dict[str, str] | None = None
    codes: Mapping[str, CodeSet] = field(default_factory=dict)

    @property
    def limit(self) -> int:
        return int(self.params.get("limit", LIMIT.default))

    @property
    def offset(self) -> int:
        return int(self.params.get("offset", 0))

    def require_period(self) -> Period:
        """The period of a report that takes one (always resolved by prepare)."""
        if self.period is None:
            raise InvalidInput("period", "this report needs a period", "period, or start and end")
        return self.period

    def page_sql(self) -> str:
        """LIMIT/OFFSET for a report's main list."""
        return f" LIMIT {self.limit} OFFSET {self.offset}"

    def practitioner_names(self) -> dict[str, str]:
        """Practitioner id -> display name when the caller may read the practitioner view, else {}."""
        if self._names is None:
            self._names = {}
            if "practitioner" in self.available:
                sql = "SELECT id, prefix, given, family FROM practitioner ORDER BY id"
                for r in self.query(sql, MAX_LIMIT):
                    parts = [r.get("prefix"), r.get("given"), r.get("family")]
                    self._names[str(r["id"])] = " ".join(str(p) for p in parts if p) or str(r["id"])
        return self._names


@dataclass(slots=True)
class ReportResult:
    """What a report returns: rows, the headline sentence, key numbers and the exact definition."""

    rows: list[Row]
    headline: str
    summary: dict[str, Any]
    definition: dict[str, Any]
    total_rows: int | None = None


@dataclass(frozen=True, slots=True)
class ReportSpec:
    """A predefined report: its name, description for the model, params, views and builder."""

    name: str
    title: str
    description: str
    params: tuple[Param, ...]
    views: tuple[str, ...]
    build: Callable[[ReportContext], ReportResult]
    takes_period: bool = False
    default_period: str = "last_30_days"
    optional_views: tuple[str, ...] = ("practitioner",)
    extra: Mapping[str, Any] = field(default_factory=dict)
    # (param name, "condition" | "lab"): text params the service resolves to codes before the builder runs.
    resolves: tuple[tuple[str, str], ...] = ()

    def all_params(self) -> tuple[Param, ...]:
        """The report's params plus the common ones (today, limit, offset)."""
        return (*self.params, TODAY, LIMIT, OFFSET)

    def param_names(self) -> list[str]:
        names = [p.name for p in self.all_params()]
        return names + list(PERIOD_PARAMS) if self.takes_period else names

    def describe(self) -> dict[str, Any]:
        """The report for list_reports / --help: name, title, description, params."""
        params = [p.as_dict() for p in self.all_params()]
        if self.takes_period:
            params.append(
                {
                    "name": "period",
                    "type": "choice",
                    "description": PERIOD_DOC,
                    "default": self.default_period,
                    "choices": list(PERIODS),
                }
            )
            params.append({"name": "start", "type": "date", "description": "First day (YYYY-MM-DD)", "default": None})
            params.append(
                {"name": "end", "type": "date", "description": "Day after the last (exclusive)", "default": None}
            )
        return {"name": self.name, "title": self.title, "description": self.description, "params": params}

    def prepare(self, raw: Mapping[str, Any] | None, today: dt.date) -> tuple[dict[str, Any], dt.date, Period | None]:
        """Validated params, the effective today and the period; InvalidInput for anything not allowed."""
        given = dict(raw or {})
        if not all(isinstance(k, str) for k in given):
            raise InvalidInput("params", "keys must be parameter names", ", ".join(self.param_names()))
        unknown = sorted(k for k in given if k not in self.param_names())
        if unknown:
            raise InvalidInput(
                "params", f"unknown parameter {unknown[0]!r} for report {self.name}", ", ".join(self.param_names())
            )
        day = parse_date("today", given["today"]) if given.get("today") is not None else today
        values = {p.name: p.parse(given.get(p.name)) for p in self.all_params() if p.name != "today"}
        period = resolve_period(given, day, default=self.default_period) if self.takes_period else None
        return values, day, period


_REPORTS: dict[str, ReportSpec] = {}


def register(spec: ReportSpec) -> ReportSpec:
    """Add a report to the registry (called by each report family module)."""
    _REPORTS[spec.name] = spec
    return spec


def _load() -> None:
    if not _REPORTS:
        from fhirgate.analytics.reports import care_gaps, engagement, scheduling  # noqa: F401 - they register

    return


ORDER = (
    "patients_not_seen",
    "no_show_summary",
    "lapsed_high_value_patients",
    "service_volume",
    "provider_utilization",
    "cancellations",
    "new_vs_returning_patients",
    "diabetes_without_a1c",
    "condition_without_lab",
)


def reports() -> dict[str, ReportSpec]:
    """Every report by name: the built-in ones in ORDER, then any others in registration order."""
    _load()
    rank = {name: i for i, name in enumerate(ORDER)}
    return dict(sorted(_REPORTS.items(), key=lambda kv: rank.get(kv[0], len(ORDER))))


def report_names() -> list[str]:
    """The names of every report."""
    return list(reports())


def get_report(name: Any) -> ReportSpec:
    """The report called `name`; InvalidInput listing the available names otherwise."""
    known = reports()
    if not isinstance(name, str) or name.strip() not in known:
        raise InvalidInput("name", "unknown report", ", ".join(known))
    return known[name.strip()]


def run(
    spec: ReportSpec,
    raw: Mapping[str, Any] | None,
    query: QueryFn,
    *,
    available: Sequence[str],
    today: dt.date | None = None,
    codes: Mapping[str, CodeSet] | None = None,
) -> tuple[ReportResult, dict[str, Any], dt.date, Period | None]:
    """Validate params and build the report with `query`; returns the result and what it was run with.

    `codes` carries the service's resolution of the spec's `resolves` params (required for those reports).
    """
    values, day, period = spec.prepare(raw, today or dt.date.today())
    given = dict(codes or {})
    missing = [name for name, _ in spec.resolves if name not in given]
    if missing:
        raise InvalidInput(missing[0], "is required and must be resolved to codes", "words or a code")
    ctx = ReportContext(values, day, period, query, frozenset(available), codes=given)
    return spec.build(ctx), values, day, period
