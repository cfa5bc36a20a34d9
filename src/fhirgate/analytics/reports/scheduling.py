"""Scheduling reports over the appointment view: no-shows, service volume, provider utilization, cancellations."""

# ruff: noqa: S608 - report SQL inlines only validated dates, integers and FHIR ids (see registry).

from __future__ import annotations

import datetime as dt
from typing import Any

from fhirgate.analytics.reports.common import (
    BILLED_DEF,
    CANCEL_REASONS,
    NOT_BILLED_SQL,
    TIME_ZONE,
    WEEKDAY_ORDER,
    WEEKDAYS,
    money,
    num,
    period_in,
    when,
    who,
)
from fhirgate.analytics.reports.params import Param, Period
from fhirgate.analytics.reports.registry import ReportContext, ReportResult, ReportSpec, pct, rate, register

KEPT_OR_MISSED = "noshow / (fulfilled + noshow): booked, cancelled and other statuses are not in the denominator"
DAILY = "appointment_daily"  # maintained per-day rollup (analytics.views.rollup)
BILLING = "billing_daily"  # maintained per-day billed lines by service (analytics.views.billing)
UPCOMING = "('proposed', 'pending', 'booked', 'arrived', 'checked-in', 'waitlist')"
_MINUTES = "coalesce(minutes, round((julianday(end_time) - julianday(start_time)) * 1440))"


def _periods(ctx: ReportContext) -> Period:
    return ctx.require_period()


# -- no_show_summary ------------------------------------------------------------------------------------


def _no_show_rows(ctx: ReportContext) -> list[dict[str, Any]]:
    cur = _periods(ctx)
    prev = cur.previous()
    if DAILY in ctx.available:
        return ctx.query(_no_show_daily_sql(cur, prev), 200)
    c = f"start_time >= '{cur.start.isoformat()}'"
    p = f"start_time < '{cur.start.isoformat()}'"
    sums = "sum(n), sum(f), sum(pn), sum(pf)"
    # One pass over the covering index into per-appointment 0/1 flags; weekday is computed once per local
    # date (strftime per row costs more than the grouping), then rolled up.
    sql = (
        "WITH a AS MATERIALIZED (SELECT practitioner_id AS prac, service_code AS svc, service_display AS svc_name, "
        "substr(start_time, 1, 10) AS d, "
        "CASE WHEN length(start_time) >= 13 THEN CAST(substr(start_time, 12, 2) AS INTEGER) END AS hr, "
        f"{c} AND status = 'noshow' AS n, {c} AND status <> 'noshow' AS f, "
        f"{p} AND status = 'noshow' AS pn, {p} AND status <> 'noshow' AS pf FROM appointment "
        f"WHERE start_time >= '{prev.start.isoformat()}' AND start_time < '{cur.end.isoformat()}' "
        "AND status IN ('noshow', 'fulfilled')) "
        "SELECT 'total' AS dim, NULL AS k, NULL AS label, sum(n) AS n, sum(f) AS f, sum(pn) AS pn, sum(pf) AS pf "
        f"FROM a UNION ALL SELECT 'provider', prac, NULL, {sums} FROM a GROUP BY prac "
        f"UNION ALL SELECT 'service', svc, max(svc_name), {sums} FROM a GROUP BY svc "
        f"UNION ALL SELECT 'weekday', wd, NULL, {sums} FROM (SELECT CAST(strftime('%w', d) AS INTEGER) AS wd, "
        "sum(n) AS n, sum(f) AS f, sum(pn) AS pn, sum(pf) AS pf FROM a GROUP BY d) GROUP BY wd "
        f"UNION ALL SELECT 'hour', hr, NULL, {sums} FROM a GROUP BY hr"
    )
    return ctx.query(sql, 200)


def _no_show_daily_sql(cur: Period, prev: Period) -> str:
    """The no-show rows from the appointment_daily rollup: the same numbers as the scan, from per-day counts."""
    start = f"'{cur.start.isoformat()}'"
    sums = "sum(n), sum(f), sum(pn), sum(pf)"
    return (
        "WITH r AS MATERIALIZED (SELECT dim, day, key, label, "
        f"CASE WHEN day >= {start} AND status = 'noshow' THEN n ELSE 0 END AS n, "
        f"CASE WHEN day >= {start} AND status = 'fulfilled' THEN n ELSE 0 END AS f, "
        f"CASE WHEN day < {start} AND status = 'noshow' THEN n ELSE 0 END AS pn, "
        f"CASE WHEN day < {start} AND status = 'fulfilled' THEN n ELSE 0 END AS pf FROM appointment_daily "
        f"WHERE dim IN ('practitioner', 'service', 'hour') AND {_days(prev.start, cur.end)} "
        "AND status IN ('noshow', 'fulfilled')) "
        "SELECT 'total' AS dim, NULL AS k, NULL AS label, sum(n) AS n, sum(f) AS f, sum(pn) AS pn, sum(pf) AS pf "
        "FROM r WHERE dim = 'practitioner' "
        f"UNION ALL SELECT 'provider', key, NULL, {sums} FROM r WHERE dim = 'practitioner' GROUP BY key "
        f"UNION ALL SELECT 'service', key, max(label), {sums} FROM r WHERE dim = 'service' GROUP BY key "
        f"UNION ALL SELECT 'weekday', wd, NULL, {sums} FROM (SELECT CAST(strftime('%w', day) AS INTEGER) AS wd, "
        "sum(n) AS n, sum(f) AS f, sum(pn) AS pn, sum(pf) AS pf FROM r WHERE dim = 'practitioner' GROUP BY day) "
        f"GROUP BY wd UNION ALL SELECT 'hour', CAST(key AS INTEGER), NULL, {sums} FROM r WHERE dim = 'hour' "
        "GROUP BY key"
    )


def _days(start: dt.date, end: dt.date) -> str:
    """SQL: the rollup's day lies in [start, end)."""
    return f"day >= '{start.isoformat()}' AND day < '{end.isoformat()}'"


def _counted(status: str) -> str:
    """SQL: the rollup rows' appointments with the status condition (`status = 'x'`, `status IN (...)`)."""
    return f"sum(CASE WHEN {status} THEN n ELSE 0 END)"


def _sources(ctx: ReportContext, views: list[str]) -> list[str]:
    """The views a report read: `views`, with the appointment rollup when it was used instead of a scan."""
    return [*views, DAILY] if DAILY in ctx.available else views


_N_FULFILLED = _counted("status = 'fulfilled'")
_N_NOSHOW = _counted("status = 'noshow'")
_N_CANCELLED = _counted("status = 'cancelled'")
_N_UPCOMING = _counted(f"status IN {UPCOMING}")


def _ns_row(dim: str, key: Any, label: Any, r: dict[str, Any] | None) -> dict[str, Any]:
    n, f = num(r and r["n"]), num(r and r["f"])
    pn, pf = num(r and r["pn"]), num(r and r["pf"])
    cur, prev = rate(n, n + f), rate(pn, pn + pf)
    return {
        "dimension": dim,
        "key": key,
        "label": label,
        "no_shows": n,
        "fulfilled": f,
        "rate": cur,
        "previous_no_shows": pn,
        "previous_fulfilled": pf,
        "previous_rate": prev,
        "change": round(cur - prev, 4) if cur is not None and prev is not None else None,
    }


def _worst(rows: list[dict[str, Any]], dim: str, minimum: int = 10) -> dict[str, Any] | None:
    pool = [
        r for r in rows if r["dimension"] == dim and r["rate"] is not None and r["no_shows"] + r["fulfilled"] >= minimum
    ]
    return max(pool, key=lambda r: (r["rate"], r["no_shows"]), default=None)


def build_no_show_summary(ctx: ReportContext) -> ReportResult:
    """No-shows and rates by provider, service, weekday and hour, against the previous equal period."""
    cur = _periods(ctx)
    prev = cur.previous()
    raw = _no_show_rows(ctx)
    names = ctx.practitioner_names()
    total = _ns_row("total", None, "all appointments", next((r for r in raw if r["dim"] == "total"), None))
    rows: list[dict[str, Any]] = [total]
    providers = {r["k"]: r for r in raw if r["dim"] == "provider"}
    for pid in names:  # practitioners with no kept-or-missed appointment in either period: rate null
        providers.setdefault(pid, {"n": 0, "f": 0, "pn": 0, "pf": 0, "k": pid})
    prov = [_ns_row("provider", k, who(names, k), r) for k, r in providers.items()]
    prov.sort(key=lambda r: (-r["no_shows"], -(r["fulfilled"]), str(r["key"])))
    svc = [_ns_row("service", r["k"], r["label"], r) for r in raw if r["dim"] == "service"]
    svc.sort(key=lambda r: (-r["no_shows"], str(r["key"])))
    by_wd = {r["k"]: r for r in raw if r["dim"] == "weekday"}
    wd = [_ns_row("weekday", WEEKDAYS[d], WEEKDAYS[d], by_wd.get(d)) for d in WEEKDAY_ORDER if d in by_wd]
    hours = sorted((r for r in raw if r["dim"] == "hour"), key=lambda r: (r["k"] is None, r["k"] or 0))
    hr = [_ns_row("hour", r["k"], None if r["k"] is None else f"{r['k']:02d}:00-{r['k']:02d}:59", r) for r in hours]
    cap = ctx.limit
    rows += prov[:cap] + svc[:cap] + wd[:cap] + hr[:cap]
    parts = [
        f"No-shows {when(cur)}: {total['no_shows']} of {total['no_shows'] + total['fulfilled']} kept-or-missed "
        f"appointments ({pct(total['rate'])}), versus {total['previous_no_shows']} of "
        f"{total['previous_no_shows'] + total['previous_fulfilled']} ({pct(total['previous_rate'])}) in the "
        f"previous {cur.days} days"
    ]
    worst_p, worst_d = _worst(prov, "provider"), _worst(wd, "weekday")
    if worst_p:
        parts.append(f"highest provider rate {worst_p['label']} at {pct(worst_p['rate'])}")
    if worst_d:
        parts.append(f"worst weekday {worst_d['label']} at {pct(worst_d['rate'])}")
    definition = {
        "period": cur.as_dict(),
        "previous_period": prev.as_dict(),
        "time_zone": TIME_ZONE,
        "counted": "Appointments with status noshow or fulfilled whose start falls in the period.",
        "rate": KEPT_OR_MISSED + "; null when the denominator is 0 (no kept-or-missed appointments).",
        "dimensions": (
            "total; provider = appointment practitioner (first Practitioner participant), listing every "
            "practitioner in the practitioner view when you may read it; service = serviceType code; weekday "
            "and hour = local start time. Rows per dimension are capped by limit."
        ),
        "change": "rate minus previous_rate (a fraction: 0.02 = 2 percentage points).",
        "sources": _sources(ctx, ["appointment"]) + (["practitioner"] if names else []),
    }
    summary = {k: total[k] for k in ("no_shows", "fulfilled", "rate", "previous_no_shows", "previous_fulfilled")}
    summary["previous_rate"] = total["previous_rate"]
    return ReportResult(rows, "; ".join(parts) + ".", summary, definition, len(rows))


# -- service_volume -------------------------------------------------------------------------------------


def build_service_volume(ctx: ReportContext) -> ReportResult:
    """Appointments per service in the period, by outcome, with billed revenue of the service's line items."""
    cur = _periods(ctx)
    if DAILY in ctx.available:
        appts = (
            f"SELECT key AS svc, max(label) AS name, sum(n) AS appts, {_N_FULFILLED} AS "
            f"fulfilled, {_N_NOSHOW} AS noshow, {_N_CANCELLED} AS "
            f"cancelled, {_N_UPCOMING} AS upcoming FROM appointment_daily "
            f"WHERE dim = 'service' AND {_days(cur.start, cur.end)} AND status <> 'entered-in-error' GROUP BY key"
        )
    else:
        appts = (
            "SELECT service_code AS svc, max(service_display) AS name, count(*) AS appts, "
            "sum(status = 'fulfilled') AS fulfilled, sum(status = 'noshow') AS noshow, "
            f"sum(status = 'cancelled') AS cancelled, sum(status IN {UPCOMING}) AS upcoming FROM appointment "
            f"WHERE {period_in('start_time', cur)} AND status <> 'entered-in-error' GROUP BY svc"
        )
    if BILLING in ctx.available:  # the same sums from per-day billed amounts and line counts
        billed = (
            "SELECT service_display AS name, sum(amount) AS revenue, sum(lines) AS lines FROM billing_daily "
            f"WHERE {_days(cur.start, cur.end)} GROUP BY service_display"
        )
    else:
        billed = (
            "SELECT service_display AS name, sum(amount) AS revenue, count(*) AS lines FROM ("
            f"SELECT service_display, amount FROM claim_line WHERE {period_in('service_date', cur)} "
            f"AND status NOT IN {NOT_BILLED_SQL} UNION ALL SELECT service_display, amount FROM invoice_line "
            f"WHERE {period_in('date', cur)} AND status NOT IN {NOT_BILLED_SQL}) GROUP BY service_display"
        )
    sql = (
        f"WITH a AS ({appts}), b AS ({billed}) "
        "SELECT a.*, b.revenue, b.lines, count(*) OVER () AS services, sum(a.appts) OVER () AS all_appts, "
        "sum(b.revenue) OVER () AS all_revenue FROM a LEFT JOIN b ON b.name = a.name "
        "ORDER BY a.appts DESC, a.svc" + ctx.page_sql()
    )
    raw = ctx.query(sql, ctx.limit)
    rows = [
        {
            "service_code": r["svc"],
            "service": r["name"],
            "appointments": num(r["appts"]),
            "fulfilled": num(r["fulfilled"]),
            "noshow": num(r["noshow"]),
            "cancelled": num(r["cancelled"]),
            "upcoming": num(r["upcoming"]),
            "revenue": money(r["revenue"]),
            "billed_lines": num(r["lines"]),
        }
        for r in raw
    ]
    services = num(raw[0]["services"]) if raw else 0
    all_appts = num(raw[0]["all_appts"]) if raw else 0
    all_revenue = money(raw[0]["all_revenue"]) if raw else 0.0
    top = rows[0] if rows and ctx.offset == 0 else None
    headline = (
        f"{all_appts} appointments across {services} services {when(cur)}, "
        f"billed ${all_revenue:,.2f} for those services"
    )
    if top:
        headline += (
            f"; most booked: {top['service']} with {top['appointments']} appointments "
            f"({top['fulfilled']} fulfilled, ${top['revenue']:,.2f} billed)"
        )
    definition = {
        "period": cur.as_dict(),
        "time_zone": TIME_ZONE,
        "counted": (
            "appointments = appointments whose start falls in the period, any status except entered-in-error "
            "(fulfilled, noshow, cancelled and upcoming = proposed/pending/booked/arrived/checked-in/waitlist), "
            "grouped by serviceType code."
        ),
        "revenue": (
            BILLED_DEF + " Only the service's own line items count (line text equal to the service's name, e.g. "
            "'Chronic care visit'; labs, vaccines and other add-on lines are not included), dated in the period "
            "by Claim.billablePeriod.start (claim_line.service_date) or Invoice.date (invoice_line.date)."
        ),
        "order": "appointments descending, then service code; limit/offset page the list.",
        "sources": _sources(ctx, ["appointment", "claim_line", "invoice_line"])
        + ([BILLING] if BILLING in ctx.available else []),
    }
    summary = {"services": services, "appointments": all_appts, "revenue": all_revenue}
    return ReportResult(rows, headline + ".", summary, definition, services)


# -- provider_utilization -------------------------------------------------------------------------------


def build_provider_utilization(ctx: ReportContext) -> ReportResult:
    """Per provider: appointments, fulfilled visits, booked minutes and no-show share in the period."""
    cur = _periods(ctx)
    if DAILY in ctx.available:  # the same sums from per-day counts and minutes
        sql = (
            f"SELECT key AS prac, sum(n) AS appts, {_N_FULFILLED} AS fulfilled, "
            f"{_N_NOSHOW} AS noshow, {_N_CANCELLED} AS cancelled, "
            f"{_N_UPCOMING} AS upcoming, sum(CASE WHEN status NOT IN ('cancelled', "
            "'entered-in-error') THEN minutes END) AS booked_minutes, sum(CASE WHEN status = 'fulfilled' THEN "
            "minutes END) AS fulfilled_minutes FROM appointment_daily "
            f"WHERE dim = 'practitioner' AND {_days(cur.start, cur.end)} AND status <> 'entered-in-error' GROUP BY key"
        )
    else:
        sql = (
            "SELECT practitioner_id AS prac, count(*) AS appts, sum(status = 'fulfilled') AS fulfilled, "
            f"sum(status = 'noshow') AS noshow, sum(status = 'cancelled') AS cancelled, sum(status IN {UPCOMING}) "
            f"AS upcoming, sum(CASE WHEN status NOT IN ('cancelled', 'entered-in-error') THEN {_MINUTES} END) AS "
            f"booked_minutes, sum(CASE WHEN status = 'fulfilled' THEN {_MINUTES} END) AS fulfilled_minutes "
            f"FROM appointment WHERE {period_in('start_time', cur)} AND status <> 'entered-in-error' GROUP BY prac"
        )
    raw = {r["prac"]: r for r in ctx.query(sql, 200)}
    names = ctx.practitioner_names()
    for pid in names:
        raw.setdefault(pid, {"prac": pid})
    total_fulfilled = sum(num(r.get("fulfilled")) for r in raw.values())
    rows = []
    for pid, r in raw.items():
        fulfilled, noshow = num(r.get("fulfilled")), num(r.get("noshow"))
        rows.append(
            {
                "practitioner_id": pid,
                "practitioner": who(names, pid),
                "appointments": num(r.get("appts")),
                "fulfilled": fulfilled,
                "noshow": noshow,
                "cancelled": num(r.get("cancelled")),
                "upcoming": num(r.get("upcoming")),
                "booked_minutes": num(r.get("booked_minutes")),
                "fulfilled_minutes": num(r.get("fulfilled_minutes")),
                "no_show_share": rate(noshow, fulfilled + noshow),
                "share_of_visits": rate(fulfilled, total_fulfilled),
            }
        )
    rows.sort(key=lambda r: (-r["fulfilled"], -r["appointments"], str(r["practitioner_id"])))
    page = rows[ctx.offset : ctx.offset + ctx.limit]
    busiest = rows[0] if rows and rows[0]["fulfilled"] else None
    headline = (
        f"{total_fulfilled} fulfilled visits across {sum(1 for r in rows if r['fulfilled'])} providers {when(cur)}"
    )
    if busiest:
        headline += (
            f"; busiest: {busiest['practitioner']} with {busiest['fulfilled']} visits "
            f"({pct(busiest['share_of_visits'])} of all, no-show share {pct(busiest['no_show_share'])})"
        )
    definition = {
        "period": cur.as_dict(),
        "time_zone": TIME_ZONE,
        "counted": (
            "Appointments whose start falls in the period, by practitioner (first Practitioner participant), "
            "any status except entered-in-error; upcoming = proposed/pending/booked/arrived/checked-in/waitlist."
        ),
        "minutes": (
            "booked_minutes = minutesDuration (else end - start) of appointments not cancelled; "
            "fulfilled_minutes = the same for fulfilled ones."
        ),
        "no_show_share": KEPT_OR_MISSED + "; null when 0.",
        "share_of_visits": "the provider's fulfilled visits / all fulfilled visits in the period.",
        "capacity": (
            "not reported: the views hold no Slot or Schedule table, so open capacity cannot be derived; "
            "utilization is given as visits, minutes and no-show share."
        ),
        "sources": _sources(ctx, ["appointment"]) + (["practitioner"] if names else []),
    }
    summary = {"fulfilled": total_fulfilled, "providers": len(rows)}
    return ReportResult(page, headline + ".", summary, definition, len(rows))


# -- cancellations --------------------------------------------------------------------------------------

_BUCKETS = {  # over a local date column
    "day": "{d}",
    "week": "date({d}, '-6 days', 'weekday 1')",
    "month": "substr({d}, 1, 7) || '-01'",
}


def build_cancellations(ctx: ReportContext) -> ReportResult:
    """Cancelled appointments in the period by reason and by day/week/month, with the cancellation rate."""
    cur = _periods(ctx)
    grain = str(ctx.params["granularity"])
    if DAILY in ctx.available:  # per-day counts: 'practitioner' rows give every appointment once
        sql = (
            "WITH r AS MATERIALIZED (SELECT day, dim, status, key, n FROM appointment_daily WHERE dim IN "
            f"('practitioner', 'reason') AND {_days(cur.start, cur.end)} AND status <> 'entered-in-error') "
            f"SELECT 'total' AS dim, NULL AS k, {_N_CANCELLED} AS n, sum(n) AS appts FROM r WHERE dim = 'practitioner' "
            "UNION ALL SELECT 'reason', key, sum(n), NULL FROM r WHERE dim = 'reason' GROUP BY key "
            f"UNION ALL SELECT 'bucket', bucket, sum(c), sum(a) FROM (SELECT {_BUCKETS[grain].format(d='day')} AS "
            f"bucket, {_N_CANCELLED} AS c, sum(n) AS a FROM r WHERE dim = 'practitioner' GROUP BY day) GROUP BY bucket"
        )
    else:
        bucket = _BUCKETS[grain].format(d="substr(start_time, 1, 10)")
        sql = (
            f"WITH a AS MATERIALIZED (SELECT status, cancel_reason, {bucket} AS bucket FROM appointment "
            f"WHERE {period_in('start_time', cur)} AND status <> 'entered-in-error') "
            "SELECT 'total' AS dim, NULL AS k, sum(status = 'cancelled') AS n, count(*) AS appts FROM a "
            "UNION ALL SELECT 'reason', cancel_reason, count(*), NULL FROM a WHERE status = 'cancelled' "
            "GROUP BY cancel_reason UNION ALL SELECT 'bucket', bucket, sum(status = 'cancelled'), count(*) "
            "FROM a GROUP BY bucket"
        )
    raw = ctx.query(sql, 200)
    total = next((r for r in raw if r["dim"] == "total"), {"n": 0, "appts": 0})
    n, appts = num(total["n"]), num(total["appts"])
    reasons = sorted((r for r in raw if r["dim"] == "reason"), key=lambda r: (-num(r["n"]), str(r["k"])))
    rows: list[dict[str, Any]] = [
        {
            "dimension": "total",
            "key": None,
            "label": "all appointments",
            "cancelled": n,
            "appointments": appts,
            "rate": rate(n, appts),
            "share_of_cancellations": rate(n, n),
        }
    ]
    for r in reasons[: ctx.limit]:
        code = r["k"]
        label = CANCEL_REASONS.get(code, code) if code else "(no reason recorded)"
        rows.append(
            {
                "dimension": "reason",
                "key": code,
                "label": label,
                "cancelled": num(r["n"]),
                "appointments": None,
                "rate": None,
                "share_of_cancellations": rate(num(r["n"]), n),
            }
        )
    buckets = sorted((r for r in raw if r["dim"] == "bucket"), key=lambda r: str(r["k"]))
    for r in buckets[: ctx.limit]:
        rows.append(
            {
                "dimension": grain,
                "key": r["k"],
                "label": f"{grain} starting {r['k']}",
                "cancelled": num(r["n"]),
                "appointments": num(r["appts"]),
                "rate": rate(num(r["n"]), num(r["appts"])),
                "share_of_cancellations": rate(num(r["n"]), n),
            }
        )
    headline = f"{n} of {appts} appointments {when(cur)} were cancelled ({pct(rate(n, appts))})"
    if reasons:
        top = reasons[0]
        label = CANCEL_REASONS.get(top["k"], top["k"]) if top["k"] else "no reason recorded"
        headline += f"; top reason: {label} ({num(top['n'])}, {pct(rate(num(top['n']), n))} of cancellations)"
    definition = {
        "period": cur.as_dict(),
        "time_zone": TIME_ZONE,
        "counted": (
            "Appointments with status cancelled whose (planned) start falls in the period; the rate's "
            "denominator is every appointment starting in the period except entered-in-error."
        ),
        "reason": (
            "Appointment.cancelationReason first coding code; labels from the HL7 code system "
            "appointment-cancellation-reason (the record's own display text is not in the view)."
        ),
        "buckets": f"{grain}s by local start date"
        + ("; weeks start on Monday" if grain == "week" else "")
        + "; rows per dimension capped by limit.",
        "sources": _sources(ctx, ["appointment"]),
    }
    summary = {"cancelled": n, "appointments": appts, "rate": rate(n, appts)}
    return ReportResult(rows, headline + ".", summary, definition, len(rows))


GRANULARITY = Param(
    "granularity", "choice", "Bucket size for the trend rows.", "week", choices=("day", "week", "month")
)

register(
    ReportSpec(
        "no_show_summary",
        "No-show summary",
        "No-shows and no-show rate (noshow / (fulfilled + noshow)) for a period, by provider, service, weekday "
        "and hour of local start time, each against the previous period of equal length. Rows: one 'total' row, "
        "then dimension rows (key, label, no_shows, fulfilled, rate, previous_*, change).",
        (),
        ("appointment",),
        build_no_show_summary,
        takes_period=True,
        optional_views=("practitioner", DAILY),
    )
)
register(
    ReportSpec(
        "service_volume",
        "Service volume",
        "Most-booked services in a period: appointments per service by outcome (fulfilled, noshow, cancelled, "
        "upcoming) with the billed revenue of each service's own line items.",
        (),
        ("appointment", "claim_line", "invoice_line"),
        build_service_volume,
        takes_period=True,
        optional_views=("practitioner", DAILY, BILLING),
    )
)
register(
    ReportSpec(
        "provider_utilization",
        "Provider utilization",
        "Per provider in a period: appointments, fulfilled visits, no-shows, cancellations, booked and fulfilled "
        "minutes, no-show share and share of all visits (capacity is not available from the views).",
        (),
        ("appointment",),
        build_provider_utilization,
        takes_period=True,
        optional_views=("practitioner", DAILY),
    )
)
register(
    ReportSpec(
        "cancellations",
        "Cancellations",
        "Cancelled appointments in a period: total and rate, counts by cancellation reason, and a trend by day, "
        "week or month (granularity).",
        (GRANULARITY,),
        ("appointment",),
        build_cancellations,
        takes_period=True,
        optional_views=("practitioner", DAILY),
    )
)
