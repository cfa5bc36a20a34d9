"""Patient engagement reports: patients not seen, lapsed high-value patients, new versus returning patients."""

# ruff: noqa: S608 - report SQL inlines only validated dates, integers and FHIR ids (see registry).

from __future__ import annotations

import datetime as dt
from typing import Any

from fhirgate.analytics.reports.common import BILLED_DEF, NOT_BILLED_SQL, TIME_ZONE, money, num, when, who
from fhirgate.analytics.reports.params import Param, add_months
from fhirgate.analytics.reports.registry import (
    ReportContext,
    ReportResult,
    ReportSpec,
    pct,
    rate,
    register,
    sql_date,
    sql_id,
)

ACTIVE_PANEL = (
    "SELECT id, family, given, general_practitioner_id AS gp FROM patient "
    "WHERE active = 1 AND coalesce(deceased, 0) = 0"
)
SUMMARY = "patient_activity"  # maintained per-patient summary (analytics.views.summary)
ACTIVE_DEF = "Patients with Patient.active = true and not deceased (patient view)."


def _split_last(value: Any) -> tuple[str | None, str | None]:
    if not value:
        return None, None
    when_, _, prac = str(value).partition("|")
    return when_ or None, prac or None


# -- patients_not_seen ----------------------------------------------------------------------------------


def _not_seen_from_summary(ctx: ReportContext, lo: str, hi: str) -> list[dict[str, Any]]:
    """The page and counts of patients_not_seen (whole panel) from patient_activity's indexes.

    Every visible patient_activity row with active = 1 is a panel patient (its Patient resource is active, not
    deceased, unlabelled; the summary is offered only when its exclusions include the patient view's), so:
    never = panel - active rows with a fulfilled visit before `hi`; not seen with a last visit = active rows whose
    last fulfilled visit is before `lo`, plus the rare ones whose latest is after the window (probed). The panel
    is counted in the patient view; when it holds patients without a visible summary row (consent excluding
    only appointments or billing for them), they are never seen and the never-seen list walks the patient view
    instead of the summary. Same rows, order and counts as the scanning query.
    """
    depth = ctx.limit + ctx.offset
    fulfilled_in = (
        "SELECT 1 FROM appointment a WHERE a.patient_id = s.patient_id AND a.status = 'fulfilled' "
        f"AND a.start_time >= {lo} AND a.start_time < {hi}"
    )
    counts_sql = (
        f"SELECT (SELECT count(*) FROM patient WHERE active = 1 AND coalesce(deceased, 0) = 0) AS panel_size, "
        "(SELECT count(*) FROM patient_activity WHERE active = 1) AS summarized, "
        "(SELECT count(*) FROM patient_activity WHERE active = 1 AND (first_fulfilled_start IS NULL OR "
        f"first_fulfilled_start >= {hi})) AS unvisited, "
        f"(SELECT count(*) FROM patient_activity WHERE active = 1 AND last_fulfilled_start < {lo}) AS old"
    )
    counts = ctx.query(counts_sql, 1)[0]
    panel, old = num(counts["panel_size"]), num(counts["old"])
    ever = num(counts["summarized"]) - num(counts["unvisited"])  # active rows with a fulfilled visit before hi
    # Not seen, last visit before the window, a fulfilled visit after it (not in it): their last is probed.
    later = (
        "SELECT s.patient_id AS id, (SELECT a.start_time || '|' || coalesce(a.practitioner_id, '') "
        "FROM appointment a WHERE a.patient_id = s.patient_id AND a.status = 'fulfilled' "
        f"AND a.start_time < {lo} ORDER BY a.start_time DESC LIMIT 1) AS last FROM patient_activity s "
        f"WHERE s.active = 1 AND s.last_fulfilled_start >= {hi} AND +s.first_fulfilled_start < {lo} "
        f"AND NOT EXISTS ({fulfilled_in})"
    )
    late = ctx.query(f"SELECT count(*) AS n FROM ({later})", 1)[0]
    never = panel - ever
    if num(counts["summarized"]) == panel:  # every panel patient has a row: never seen = no visit before hi
        nv = (
            "SELECT id, NULL AS last FROM (SELECT patient_id AS id FROM patient_activity WHERE active = 1 "
            f"AND first_fulfilled_start IS NULL ORDER BY patient_id LIMIT {depth}) UNION ALL "
            "SELECT patient_id, NULL FROM patient_activity WHERE active = 1 "
            f"AND first_fulfilled_start >= {hi}"
        )
    else:
        nv = (
            "SELECT id, NULL AS last FROM (SELECT p.id FROM patient p WHERE p.active = 1 AND "
            "coalesce(p.deceased, 0) = 0 AND NOT EXISTS (SELECT 1 FROM patient_activity s WHERE "
            f"s.patient_id = p.id AND s.first_fulfilled_start < {hi}) ORDER BY p.id LIMIT {depth})"
        )
    # The first `depth` by last visit: every row up to the depth-th start (ties broken by practitioner, then id).
    edge = (
        f"coalesce((SELECT last_fulfilled_start FROM patient_activity WHERE active = 1 AND last_fulfilled_start "
        f"< {lo} ORDER BY last_fulfilled_start LIMIT 1 OFFSET {depth - 1}), {lo})"
    )
    before = (
        "SELECT patient_id AS id, last_fulfilled_start || '|' || last_fulfilled_practitioner AS last "
        f"FROM patient_activity WHERE active = 1 AND last_fulfilled_start <= {edge} AND +last_fulfilled_start < {lo}"
    )
    sql = (
        f"WITH g AS MATERIALIZED (SELECT id, last FROM ({nv} UNION ALL {before} UNION ALL {later}) "
        f"ORDER BY last IS NOT NULL, last, id{ctx.page_sql()}) "
        "SELECT g.id, p.family, p.given, p.general_practitioner_id AS gp, g.last FROM g "
        "JOIN patient p ON p.id = g.id ORDER BY g.last IS NOT NULL, g.last, g.id"
    )
    raw = ctx.query(sql, ctx.limit)
    not_seen = never + old + num(late["n"])
    for r in raw:
        r.update(not_seen=not_seen, never=never, panel_size=panel)
    return raw


def build_patients_not_seen(ctx: ReportContext) -> ReportResult:
    """Active patients with no fulfilled appointment in the last N days, most overdue (or never seen) first."""
    days = int(ctx.params["days"])
    cutoff = ctx.today - dt.timedelta(days=days)
    tomorrow = ctx.today + dt.timedelta(days=1)
    prac, attribution = ctx.params.get("practitioner"), str(ctx.params["attribution"])
    panel_filter = ""
    if prac and attribution == "general_practitioner":
        panel_filter = f" AND general_practitioner_id = {sql_id(prac)}"
    gone_filter = f" WHERE last_prac = {sql_id(prac)}" if prac and attribution == "last_visit" else ""
    lo, hi = sql_date(cutoff), sql_date(tomorrow)
    if SUMMARY in ctx.available and prac is None:
        raw = _not_seen_from_summary(ctx, lo, hi)
    elif SUMMARY in ctx.available:
        # patient_activity.last_fulfilled_start decides seen / not seen per patient; only when it lies after
        # the window (a fulfilled start later than `today`) is the appointment view asked about the window.
        sql = (
            f"WITH panel AS ({ACTIVE_PANEL}{panel_filter}), "
            "g0 AS (SELECT p.*, CASE WHEN s.last_fulfilled_start IS NULL THEN NULL "
            f"WHEN s.last_fulfilled_start < {lo} THEN s.last_fulfilled_start || '|' || s.last_fulfilled_practitioner "
            "ELSE (SELECT a.start_time || '|' || coalesce(a.practitioner_id, '') FROM appointment a "
            f"WHERE a.patient_id = p.id AND a.status = 'fulfilled' AND a.start_time < {lo} "
            "ORDER BY a.start_time DESC LIMIT 1) END AS last FROM panel p "
            "LEFT JOIN patient_activity s ON s.patient_id = p.id "
            f"WHERE s.last_fulfilled_start IS NULL OR s.last_fulfilled_start < {lo} OR "
            f"(s.last_fulfilled_start >= {hi} AND NOT EXISTS (SELECT 1 FROM appointment a WHERE a.patient_id = p.id "
            f"AND a.status = 'fulfilled' AND a.start_time >= {lo} AND a.start_time < {hi}))), "
            "g AS (SELECT *, CASE WHEN last IS NOT NULL THEN substr(last, instr(last, '|') + 1) END AS last_prac "
            "FROM g0) "
            "SELECT id, family, given, gp, last, count(*) OVER () AS not_seen, sum(last IS NULL) OVER () AS never, "
            f"(SELECT count(*) FROM panel) AS panel_size FROM g{gone_filter} "
            "ORDER BY last IS NOT NULL, last, id" + ctx.page_sql()
        )
    else:  # the caller may not read the summary: the same rows from the views alone
        sql = (
            f"WITH panel AS ({ACTIVE_PANEL}{panel_filter}), "
            "seen AS (SELECT DISTINCT patient_id FROM appointment WHERE status = 'fulfilled' "
            f"AND start_time >= {sql_date(cutoff)} AND start_time < {sql_date(tomorrow)} AND patient_id IS NOT NULL), "
            "g0 AS (SELECT p.*, (SELECT a.start_time || '|' || coalesce(a.practitioner_id, '') FROM appointment a "
            "WHERE a.patient_id = p.id AND a.status = 'fulfilled' AND a.start_time < "
            f"{sql_date(cutoff)} ORDER BY a.start_time DESC LIMIT 1) AS last FROM panel p "
            "WHERE p.id NOT IN (SELECT patient_id FROM seen)), "
            "g AS (SELECT *, CASE WHEN last IS NOT NULL THEN substr(last, instr(last, '|') + 1) END AS last_prac "
            "FROM g0) "
            "SELECT id, family, given, gp, last, count(*) OVER () AS not_seen, sum(last IS NULL) OVER () AS never, "
            f"(SELECT count(*) FROM panel) AS panel_size FROM g{gone_filter} "
            "ORDER BY last IS NOT NULL, last, id" + ctx.page_sql()
        )
    if not (SUMMARY in ctx.available and prac is None):  # the fast path has read its rows already
        raw = ctx.query(sql, ctx.limit)
    names = ctx.practitioner_names()
    rows = []
    for r in raw:
        last, last_prac = _split_last(r["last"])
        rows.append(
            {
                "patient_id": r["id"],
                "family": r["family"],
                "given": r["given"],
                "last_visit": last,
                "days_since": (ctx.today - dt.date.fromisoformat(last[:10])).days if last else None,
                "last_visit_practitioner_id": last_prac,
                "general_practitioner_id": r["gp"],
            }
        )
    not_seen = num(raw[0]["not_seen"]) if raw else 0
    never = num(raw[0]["never"]) if raw else 0
    panel = num(raw[0]["panel_size"]) if raw else None
    if not raw and ctx.offset == 0:
        not_seen, never = 0, 0
    scope = "active patients"
    if prac:
        how = "general practitioner" if attribution == "general_practitioner" else "last visit with them"
        scope += f" of {who(names, prac)} ({how})"
    headline = f"{not_seen} {scope} have had no fulfilled visit in the {days} days since {cutoff.isoformat()}"
    if prac is None or attribution == "general_practitioner":
        headline = (
            f"{not_seen} of {panel if panel is not None else 'the'} {scope} ({pct(rate(not_seen, panel or 0))}) "
            f"have had no fulfilled visit in the {days} days since {cutoff.isoformat()}"
        )
    headline += f"; {never} of them have never had one."
    definition = {
        "as_of": ctx.today.isoformat(),
        "window": {"start": cutoff.isoformat(), "end_exclusive": tomorrow.isoformat(), "days": days},
        "time_zone": TIME_ZONE,
        "patients": ACTIVE_DEF,
        "visit": (
            "An appointment with status fulfilled (a kept visit; in this practice every fulfilled appointment has "
            "a finished Encounter). Seen = a fulfilled appointment with local start date in the window "
            "(today included). Not seen = no such appointment, including patients with no appointments at all."
        ),
        "last_visit": "The latest fulfilled appointment before the window (null: never).",
        "practitioner": (
            "With `practitioner`, attribution=last_visit keeps patients whose last fulfilled visit was with that "
            "practitioner (so a patient who moved to another provider counts for the new one); "
            "attribution=general_practitioner keeps patients whose Patient.generalPractitioner is that practitioner."
        ),
        "order": "never seen first, then oldest last visit; limit/offset page the list.",
        "sources": ["patient", "appointment", *([SUMMARY] if SUMMARY in ctx.available else [])],
    }
    summary = {
        "not_seen": not_seen,
        "never_seen": never,
        "panel": panel if prac is None or attribution != "last_visit" else None,
    }
    return ReportResult(rows, headline, summary, definition, not_seen)


# -- lapsed_high_value_patients -------------------------------------------------------------------------


def build_lapsed_high_value(ctx: ReportContext) -> ReportResult:
    """Top patients by lifetime billed amount with no appointment started or created in the last M months."""
    months = int(ctx.params["months"])
    floor = int(ctx.params["min_billed"])
    cutoff = add_months(ctx.today, -months)
    c = sql_date(cutoff)
    if SUMMARY in ctx.available:
        # Lifetime billed and the latest appointment start/created come from the patient_activity summary;
        # the last appointment is looked up only for the page of rows returned.
        # An active summary row is an active panel patient (analytics.views.summary), so the lapsed patients are
        # two ranges of the (active, last_activity, lifetime_billed) index: no last activity, or one before the
        # cutoff. Names and the last appointment are looked up only for the page of rows returned.
        quiet = (
            "SELECT patient_id AS id, lifetime_billed AS billed FROM patient_activity WHERE active = 1 "
            f"AND last_activity {{}} AND lifetime_billed > 0 AND lifetime_billed >= {floor}"
        )
        sql = (
            f"WITH q AS MATERIALIZED ({quiet.format('IS NULL')} UNION ALL {quiet.format('< ' + c)}), "
            "r AS MATERIALIZED (SELECT q.*, count(*) OVER () AS lapsed, sum(q.billed) OVER () AS lapsed_billed "
            f"FROM q ORDER BY q.billed DESC, q.id{ctx.page_sql()}) "
            "SELECT r.id, p.family, p.given, round(r.billed, 2) AS billed, (SELECT a.start_time || '|' || "
            "coalesce(a.status, '') FROM appointment a WHERE a.patient_id = r.id ORDER BY a.start_time DESC LIMIT 1) "
            "AS last, r.lapsed, r.lapsed_billed FROM r JOIN patient p ON p.id = r.id ORDER BY r.billed DESC, r.id"
        )
    else:  # the caller may not read the summary: the same rows from the views alone
        sql = (
            f"WITH panel AS ({ACTIVE_PANEL}), "
            "quiet AS (SELECT p.* FROM panel p WHERE NOT EXISTS (SELECT 1 FROM appointment a WHERE a.patient_id = p.id "
            f"AND (a.start_time >= {c} OR a.created >= {c}))), "
            "b AS MATERIALIZED (SELECT q.*, coalesce((SELECT sum(amount) FROM claim_line l WHERE l.patient_id = q.id "
            f"AND l.status NOT IN {NOT_BILLED_SQL}), 0) + coalesce((SELECT sum(amount) FROM invoice_line l "
            f"WHERE l.patient_id = q.id AND l.status NOT IN {NOT_BILLED_SQL}), 0) AS billed FROM quiet q), "
            "r AS MATERIALIZED (SELECT b.*, count(*) OVER () AS lapsed, sum(b.billed) OVER () AS lapsed_billed FROM b "
            f"WHERE b.billed > 0 AND b.billed >= {floor} ORDER BY b.billed DESC, b.id{ctx.page_sql()}) "
            "SELECT r.id, r.family, r.given, round(r.billed, 2) AS billed, (SELECT a.start_time || '|' || "
            "coalesce(a.status, '') FROM appointment a WHERE a.patient_id = r.id ORDER BY a.start_time DESC LIMIT 1) "
            "AS last, r.lapsed, r.lapsed_billed FROM r ORDER BY r.billed DESC, r.id"
        )
    raw = ctx.query(sql, ctx.limit)
    rows = []
    for r in raw:
        last, status = _split_last(r["last"])
        rows.append(
            {
                "patient_id": r["id"],
                "family": r["family"],
                "given": r["given"],
                "lifetime_billed": money(r["billed"]),
                "last_appointment": last,
                "last_appointment_status": status,
            }
        )
    lapsed = num(raw[0]["lapsed"]) if raw else 0
    billed = money(raw[0]["lapsed_billed"]) if raw else 0.0
    headline = (
        f"{lapsed} active patients with lifetime billing over ${floor:,} have no appointment started or booked "
        f"since {cutoff.isoformat()} ({months} months); together they were billed ${billed:,.2f}"
    )
    if rows and ctx.offset == 0:
        headline += f", the top one ${rows[0]['lifetime_billed']:,.2f}"
    definition = {
        "as_of": ctx.today.isoformat(),
        "lapsed_since": cutoff.isoformat(),
        "time_zone": TIME_ZONE,
        "patients": ACTIVE_DEF,
        "lapsed": (
            f"No appointment of any status (including cancelled and upcoming) whose start or created date is on "
            f"or after {cutoff.isoformat()} (today minus {months} calendar months)."
        ),
        "lifetime_billed": BILLED_DEF + " All dates. Only patients billed more than 0 (and at least min_billed).",
        "order": "lifetime_billed descending, then patient id; limit/offset page the list.",
        "sources": ["patient", "appointment", "claim_line", "invoice_line"]
        + ([SUMMARY] if SUMMARY in ctx.available else []),
    }
    summary = {"lapsed_patients": lapsed, "lapsed_billed": billed}
    return ReportResult(rows, headline + ".", summary, definition, lapsed)


# -- new_vs_returning_patients --------------------------------------------------------------------------


def build_new_vs_returning(ctx: ReportContext) -> ReportResult:
    """Patients with a fulfilled visit in the period: first-ever visit (new) versus returning, by provider."""
    cur = ctx.require_period()
    s, e = sql_date(cur.start), sql_date(cur.end)
    if SUMMARY in ctx.available:
        # New = first-ever fulfilled visit in the period: one range scan of the summary's first-visit index.
        returning = (
            "pts.patient_id NOT IN (SELECT patient_id FROM patient_activity WHERE first_fulfilled_start >= "
            f"{s} AND first_fulfilled_start < {e})"
        )
    else:
        returning = (
            "EXISTS (SELECT 1 FROM appointment b WHERE b.patient_id = pts.patient_id "
            f"AND b.start_time < {s} AND b.status = 'fulfilled')"
        )
    sql = (
        "WITH v AS (SELECT patient_id, practitioner_id, start_time FROM appointment WHERE status = 'fulfilled' "
        f"AND start_time >= {s} AND start_time < {e} AND patient_id IS NOT NULL), "
        "pts AS (SELECT patient_id, count(*) AS visits, min(start_time) AS first, practitioner_id AS prac "
        "FROM v GROUP BY patient_id), "
        f"c AS MATERIALIZED (SELECT pts.*, {returning} AS ret FROM pts) "
        "SELECT 'total' AS dim, NULL AS k, sum(NOT ret) AS np, sum(ret) AS rp, sum(CASE WHEN NOT ret THEN visits END) "
        "AS nv, sum(CASE WHEN ret THEN visits END) AS rv FROM c UNION ALL SELECT 'provider', prac, sum(NOT ret), "
        "sum(ret), sum(CASE WHEN NOT ret THEN visits END), sum(CASE WHEN ret THEN visits END) FROM c GROUP BY prac"
    )
    raw = ctx.query(sql, 200)
    names = ctx.practitioner_names()

    def shape(dim: str, key: Any, r: dict[str, Any]) -> dict[str, Any]:
        new, ret = num(r.get("np")), num(r.get("rp"))
        return {
            "dimension": dim,
            "key": key,
            "label": "all providers" if dim == "total" else who(names, key),
            "new_patients": new,
            "returning_patients": ret,
            "new_share": rate(new, new + ret),
            "new_patient_visits": num(r.get("nv")),
            "returning_patient_visits": num(r.get("rv")),
        }

    total = shape("total", None, next((r for r in raw if r["dim"] == "total"), {}))
    prov = [shape("provider", r["k"], r) for r in raw if r["dim"] == "provider"]
    prov.sort(key=lambda r: (-r["new_patients"], -r["returning_patients"], str(r["key"])))
    rows = [total, *prov[ctx.offset : ctx.offset + ctx.limit]]
    headline = (
        f"{total['new_patients'] + total['returning_patients']} patients had a fulfilled visit {when(cur)}: "
        f"{total['new_patients']} new (first-ever visit, {pct(total['new_share'])}) and "
        f"{total['returning_patients']} returning."
    )
    definition = {
        "period": cur.as_dict(),
        "time_zone": TIME_ZONE,
        "visit": "An appointment with status fulfilled whose start falls in the period.",
        "new": (
            "A patient with a fulfilled visit in the period and none before the period start (their first-ever "
            "fulfilled visit in this store is in the period); returning = had one before."
        ),
        "provider": (
            "The practitioner of the patient's first fulfilled visit in the period; visits count all of that "
            "patient's visits in the period."
        ),
        "sources": ["appointment"]
        + ([SUMMARY] if SUMMARY in ctx.available else [])
        + (["practitioner"] if names else []),
    }
    summary = {k: total[k] for k in ("new_patients", "returning_patients", "new_share")}
    return ReportResult(rows, headline, summary, definition, len(prov) + 1)


DAYS = Param("days", "int", "Days without a fulfilled visit (window ends today, inclusive).", 90, 1, 3650)
PRACTITIONER = Param("practitioner", "id", "Only this practitioner's patients (see attribution); default: all.")
ATTRIBUTION = Param(
    "attribution",
    "choice",
    "How patients belong to `practitioner`: last_visit (their last fulfilled visit was with them) or "
    "general_practitioner (Patient.generalPractitioner).",
    "last_visit",
    choices=("last_visit", "general_practitioner"),
)
MONTHS = Param("months", "int", "Months with no appointment started or created.", 12, 1, 120)
MIN_BILLED = Param(
    "min_billed", "int", "Only patients billed at least this much in total (whole currency units).", 0, 0, 10_000_000
)

register(
    ReportSpec(
        "patients_not_seen",
        "Patients not seen",
        "Active patients with no fulfilled visit in the last `days` days (default 90), optionally for one "
        "practitioner, with their last visit date; never-seen patients first. Headline: how many and what share.",
        (DAYS, PRACTITIONER, ATTRIBUTION),
        ("patient", "appointment"),
        build_patients_not_seen,
        optional_views=("practitioner", SUMMARY),
    )
)
register(
    ReportSpec(
        "lapsed_high_value_patients",
        "Lapsed high-value patients",
        "Top patients by lifetime billed amount (claims + self-pay invoices) who have had no appointment started "
        "or booked in the last `months` months (default 12): outreach candidates.",
        (MONTHS, MIN_BILLED),
        ("patient", "appointment", "claim_line", "invoice_line"),
        build_lapsed_high_value,
        optional_views=("practitioner", SUMMARY),
    )
)
register(
    ReportSpec(
        "new_vs_returning_patients",
        "New versus returning patients",
        "Patients with a fulfilled visit in a period split into new (first-ever fulfilled visit falls in the "
        "period) and returning, with visit counts, in total and by provider.",
        (),
        ("appointment",),
        build_new_vs_returning,
        takes_period=True,
        optional_views=("practitioner", SUMMARY),
    )
)
