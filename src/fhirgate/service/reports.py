"""The run_report use case: a predefined report executed in the SQL sandbox under the caller's policy.

A report is a parameterized SELECT over the practice views; it runs exactly like query_sql: on the
sandbox's read-only connections, seeing only the view rows the caller's SMART scopes allow (a patient/
token sees its one patient). A report whose views the caller may not search is refused up front with the
scope it needs. Gateway.run_report wraps this body in Gateway._run, so each call writes one audit record
naming the report, its parameters, the views read, and the patients listed or confined to.
Under a governance RowScope the views are narrowed the same way as for query_sql; appointment_daily is
read only when it leaves out exactly the patients the scope excludes (policy.grant_view compares the
rollup's opt-out set, read per call with one query on the small consent table, with the scope's: trusting
the definition would be wrong whenever the consent module's finer rules, periods or unreadable Consents
make the two sets differ), else the report scans the appointment view; the result says what was withheld.
A report that names a condition or a lab in words or by a code (ReportSpec.resolves) has it resolved here,
through service.concepts (analytics imports no terminology), before the builder runs; the builder receives
only the codes (ReportContext.codes) and the definition says what the words were read as.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from typing import Any

from fhirgate.analytics.reports.registry import CodeSet, ReportSpec, Row, get_report, run
from fhirgate.analytics.sql.policy import confined_patients, grant_views
from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.rowscope import RowScope
from fhirgate.errors import AccessDenied, InvalidInput, StoreError
from fhirgate.service.analytics import Analytics, withheld
from fhirgate.service.auditing import Trail
from fhirgate.service.concepts import CONDITION, LAB, resolve

MAX_PARAMS = 20


def audit_arguments(name: Any, params: Any) -> dict[str, Any]:
    """What the audit record keeps of a call: the report name and short parameter values (ids, dates, numbers)."""
    kept: dict[str, Any] = {}
    if isinstance(params, Mapping):
        for key, value in list(params.items())[:MAX_PARAMS]:
            if isinstance(value, bool | int | float) or value is None:
                kept[str(key)[:40]] = value
            else:
                kept[str(key)[:40]] = str(value)[:64]
    return {"report": str(name)[:64], "params": kept}


def run_report(
    analytics: Analytics,
    principal: Principal,
    trail: Trail,
    name: Any,
    params: Mapping[str, Any] | None,
    *,
    today: dt.date | None = None,
    scope: RowScope | None = None,
) -> dict[str, Any]:
    """Validate, authorize and run one report for `principal` under `scope`; fill `trail` with what it read."""
    started = time.perf_counter()
    spec = get_report(name)
    if params is not None and not isinstance(params, Mapping):
        raise InvalidInput("params", "must be an object of parameter values", ", ".join(spec.param_names()))
    codes = resolve_codes(spec, params)
    catalog = analytics.sandbox.catalog()
    facts = analytics.sandbox.facts(scope.withheld_labels if scope is not None else frozenset())
    grants = grant_views(principal, catalog, scope, facts=facts)
    missing = [v for v in spec.views if v not in catalog]
    if missing:
        raise StoreError(
            f"report {spec.name} needs the view {missing[0]}, which this store has not materialized "
            "(run `fhirgate views rebuild`)"
        )
    for view in spec.views:
        grant = grants[view]
        if not grant.allowed:
            needed = f" (needs scope {grant.required_scope})" if grant.required_scope else ""
            raise AccessDenied(
                f"report {spec.name} reads view {view}: {grant.detail}{needed}",
                reason=grant.reason,
                required_scope=grant.required_scope,
            )
    available = sorted(v for v in (*spec.views, *spec.optional_views) if v in grants and grants[v].allowed)
    touched: set[str] = set()

    def query(sql: str, max_rows: int) -> list[Row]:
        try:
            page = analytics.sandbox.query(grants, sql, max_rows=max_rows, touched=touched)
        finally:
            trail.query_params = sorted(touched)
            trail.patients = confined_patients(grants, touched)
        names = [c["name"] for c in page.columns]
        return [dict(zip(names, row, strict=True)) for row in page.rows]

    result, values, day, period = run(spec, params, query, available=available, today=today, codes=codes)
    listed = [str(r["patient_id"]) for r in result.rows if r.get("patient_id")]
    trail.patients = sorted({*trail.patients, *listed})
    confined = confined_patients(grants, touched)
    offset, limit = int(values["offset"]), int(values["limit"])
    more = result.total_rows is not None and offset + len(result.rows) < result.total_rows
    effective = {k: v for k, v in values.items() if v is not None}
    effective["today"] = day.isoformat()
    if period is not None:
        effective.update(start=period.start.isoformat(), end=period.end.isoformat())
    out: dict[str, Any] = {
        "report": spec.name,
        "title": spec.title,
        "headline": result.headline,
        "summary": result.summary,
        "rows": result.rows,
        "definition": {**result.definition, "access": _access(confined)},
        "params": effective,
        "page": {
            "offset": offset,
            "limit": limit,
            "returned": len(result.rows),
            "total_rows": result.total_rows,
            "next_offset": offset + limit if more and _pages(spec.name) else None,
        },
        "views": sorted(touched),
        "confined_to_patient": confined[0] if len(confined) == 1 else None,
        "elapsed_ms": round((time.perf_counter() - started) * 1000.0, 2),
    }
    held = withheld(scope, catalog, touched or spec.views)
    if held is not None:
        out["withheld"] = held
        out["definition"]["withheld"] = held["note"]
    return out


def resolve_codes(spec: ReportSpec, params: Mapping[str, Any] | None) -> dict[str, CodeSet]:
    """The codes for each param the report resolves (words or a code; its default when not given)."""
    out: dict[str, CodeSet] = {}
    declared = {p.name: p for p in spec.params}
    for name, kind in spec.resolves:
        value = declared[name].parse((params or {}).get(name))
        found = resolve(value, param=name, kind=CONDITION if kind == "condition" else LAB)
        out[name] = CodeSet(found.text, found.codes, found.icd_roots, found.rule())
    return out


def _pages(name: str) -> bool:
    """Reports whose main list pages with offset (dimension reports return every group up to limit)."""
    return name in {
        "patients_not_seen",
        "lapsed_high_value_patients",
        "diabetes_without_a1c",
        "condition_without_lab",
        "service_volume",
        "provider_utilization",
        "new_vs_returning_patients",
    }


def _access(confined: list[str]) -> str:
    if confined:
        return f"Only the rows of Patient/{confined[0]}: your access is confined to that patient's compartment."
    return "Every row of the practice your scopes allow to be searched."
