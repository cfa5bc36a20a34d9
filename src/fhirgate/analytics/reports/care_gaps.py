"""Clinical care-gap reports: patients with type 2 diabetes and no recent HbA1c, and the same gap for any
condition and lab named by the caller (resolved to codes by the service layer, passed in ReportContext.codes)."""

# ruff: noqa: S608 - report SQL inlines only validated dates, integers and re-checked codes (see registry).

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from fhirgate.analytics.reports.common import TIME_ZONE, num
from fhirgate.analytics.reports.params import Param, add_months
from fhirgate.analytics.reports.registry import (
    CodeSet,
    ReportContext,
    ReportResult,
    ReportSpec,
    pct,
    rate,
    register,
    sql_date,
)
from fhirgate.errors import InvalidInput

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
A1C = "4548-4"  # LOINC Hemoglobin A1c/Hemoglobin.total in Blood
# FHIR R4 condition-clinical: active, recurrence and relapse are the "active" statuses.
ACTIVE_CLINICAL = "('active', 'recurrence', 'relapse')"
# FHIR R4 observation-status values that are results.
RESULT_STATUSES = "('final', 'amended', 'corrected')"


def _gaps(
    ctx: ReportContext, in_cond: str, in_lab: str, cutoff: dt.date
) -> tuple[list[dict[str, Any]], int, int, int | None]:
    """(page rows, gaps, never tested, patients with the condition) for one care gap: active patients with an
    active condition matching `in_cond` whose latest result matching `in_lab` (on `o.`) is missing or before
    `cutoff`. One query serves every care-gap report, so they count and order identically."""
    result = f"FROM observation o WHERE {in_lab} AND o.status IN {RESULT_STATUSES}"
    active = (
        f"clinical_status IN {ACTIVE_CLINICAL} AND coalesce(verification_status, '') NOT IN "
        "('refuted', 'entered-in-error')"
    )
    sql = (
        f"WITH dx AS (SELECT patient_id, coalesce(min(CASE WHEN system = '{ICD10CM}' THEN code END), min(code)) "
        f"AS code, min(onset) AS onset FROM condition WHERE {in_cond} AND {active} AND patient_id IS NOT NULL "
        "GROUP BY patient_id), "
        "panel AS (SELECT dx.*, p.family, p.given FROM dx JOIN patient p ON p.id = dx.patient_id "
        "WHERE p.active = 1 AND coalesce(p.deceased, 0) = 0), "
        # The latest result: one backward seek of the (code, patient_id, effective, ...) index per patient (the
        # first row passing system and status), not a walk over all of their results; NULLs sort last there, so
        # it is max(effective). y is materialized: one probe per patient, and the patients are counted from it
        # (not by a second scan of the patient view). Value and code are looked up only for the page returned.
        f"y AS MATERIALIZED (SELECT panel.*, (SELECT o.effective {result} AND o.patient_id = panel.patient_id "
        "ORDER BY o.effective DESC LIMIT 1) AS last FROM panel), "
        "z AS MATERIALIZED (SELECT y.*, count(*) OVER () AS gaps, sum(last IS NULL) OVER () AS never, "
        f"(SELECT count(*) FROM y) AS patients FROM y WHERE last IS NULL OR last < {sql_date(cutoff)} "
        f"ORDER BY last IS NOT NULL, last, patient_id{ctx.page_sql()}) "
        f"SELECT z.*, (SELECT o.value {result} AND o.patient_id = z.patient_id AND o.effective = z.last "
        "ORDER BY o.code LIMIT 1) AS value, "
        f"(SELECT o.code {result} AND o.patient_id = z.patient_id AND o.effective = z.last ORDER BY o.code LIMIT 1) "
        "AS lab_code FROM z ORDER BY last IS NOT NULL, last, patient_id"
    )
    raw = ctx.query(sql, ctx.limit)
    gaps = num(raw[0]["gaps"]) if raw else 0
    never = num(raw[0]["never"]) if raw else 0
    patients = num(raw[0]["patients"]) if raw else None
    if patients is None and ctx.offset == 0:  # an empty page: count the patients with the condition on their own
        total_sql = (
            f"SELECT count(DISTINCT patient_id) AS n FROM condition WHERE {in_cond} AND {active} "
            "AND patient_id IN (SELECT id FROM patient WHERE active = 1 AND coalesce(deceased, 0) = 0)"
        )
        patients = num(ctx.query(total_sql, 1)[0]["n"])
    return raw, gaps, never, patients


def build_diabetes_without_a1c(ctx: ReportContext) -> ReportResult:
    """Active patients with an active E11.* condition and no HbA1c result on or after today minus M months."""
    months = int(ctx.params["months"])
    cutoff = add_months(ctx.today, -months)
    in_dm = f"code >= 'E11' AND code < 'E12' AND system = '{ICD10CM}'"
    raw, gaps, never, diabetics = _gaps(ctx, in_dm, f"o.code = '{A1C}' AND o.system = '{LOINC}'", cutoff)
    rows = [
        {
            "patient_id": r["patient_id"],
            "family": r["family"],
            "given": r["given"],
            "condition_code": r["code"],
            "onset": r["onset"],
            "last_a1c": r["last"],
            "last_a1c_value": r["value"],
        }
        for r in raw
    ]
    headline = (
        f"{gaps} of {diabetics if diabetics is not None else '?'} active patients with active type 2 diabetes "
        f"(ICD-10-CM E11.*) ({pct(rate(gaps, diabetics or 0))}) have no HbA1c result since {cutoff.isoformat()} "
        f"({months} months); {never} have none on record."
    )
    definition = {
        "as_of": ctx.today.isoformat(),
        "since": cutoff.isoformat(),
        "time_zone": TIME_ZONE,
        "patients": "Patients with Patient.active = true and not deceased.",
        "condition": (
            f"A Condition coded in {ICD10CM} with a code from E11 up to (not including) E12 (E11, E11.9, E11.65, "
            "...), clinicalStatus active, recurrence or relapse, verificationStatus not refuted or entered-in-error."
        ),
        "gap": (
            f"No Observation coded LOINC {A1C} (HbA1c) with status final, amended or corrected whose effective "
            f"local date is on or after {cutoff.isoformat()} (today minus {months} calendar months)."
        ),
        "order": "never tested first, then oldest last HbA1c; limit/offset page the list.",
        "sources": ["condition", "observation", "patient"],
    }
    summary = {"gaps": gaps, "never_tested": never, "diabetics": diabetics}
    return ReportResult(rows, headline, summary, definition, gaps)


A1C_MONTHS = Param("months", "int", "Months an HbA1c result stays current.", 6, 1, 60)

register(
    ReportSpec(
        "diabetes_without_a1c",
        "Diabetes without a recent HbA1c",
        "Care gap: active patients with an active type 2 diabetes condition (ICD-10-CM E11.*) and no HbA1c "
        "(LOINC 4548-4) result in the last `months` months (default 6), never-tested first, with the last result.",
        (A1C_MONTHS,),
        ("condition", "observation", "patient"),
        build_diabetes_without_a1c,
        optional_views=(),
    )
)


# -- condition_without_lab: the same care gap for any condition and lab the service resolved to codes ----------

SNOMED = "http://snomed.info/sct"
_CODE = re.compile(r"[A-Za-z0-9.\-]{1,64}")
_SYSTEM = re.compile(r"https?://[A-Za-z0-9.\-/]{1,120}")
# Above this many ICD-10-CM codes the condition filter uses code prefixes (same codes; see docs/terminology.md).
MAX_IN_LIST = 500


def _lit(value: str, pattern: re.Pattern[str]) -> str:
    """A resolved code or system URI as a SQL text literal (re-checked here: the sandbox takes no bindings)."""
    if not pattern.fullmatch(value):
        raise InvalidInput("codes", "a resolved code cannot be used in a report", "A-Z a-z 0-9 . -")
    return "'" + value + "'"


def _in_list(codes: list[str]) -> str:
    return "(" + ", ".join(_lit(c, _CODE) for c in codes) + ")"


def coded_sql(codes: CodeSet, prefix: str = "") -> str:
    """SQL: the row (`prefix`system, `prefix`code) is one of the resolved codes, ICD-10-CM below its roots."""
    terms: list[str] = []
    for system in dict.fromkeys(s for s, _ in codes.codes):
        values = codes.by_system(system)
        if system == ICD10CM and len(values) > MAX_IN_LIST:
            # A descendant's dotted code begins with its category's code and a dot, or with its subcategory's code.
            heads = [r + "." if "." not in r else r for r in codes.icd_roots]
            match = " OR ".join(
                f"{prefix}code = {_lit(r, _CODE)} OR substr({prefix}code, 1, {len(h)}) = {_lit(h, _CODE)}"
                for r, h in zip(codes.icd_roots, heads, strict=True)
            )
        else:
            match = f"{prefix}code IN {_in_list(values)}"
        terms.append(f"({prefix}system = {_lit(system, _SYSTEM)} AND ({match}))")
    return "(" + " OR ".join(terms) + ")" if terms else "0"


def build_condition_without_lab(ctx: ReportContext) -> ReportResult:
    """Active patients with an active condition among the resolved codes and no recent result of the resolved lab."""
    months = int(ctx.params["months"])
    cutoff = add_months(ctx.today, -months)
    cond, lab = ctx.codes["condition"], ctx.codes["lab"]
    raw, gaps, never, patients = _gaps(ctx, coded_sql(cond), coded_sql(lab, "o."), cutoff)
    rows = [
        {
            "patient_id": r["patient_id"],
            "family": r["family"],
            "given": r["given"],
            "condition_code": r["code"],
            "onset": r["onset"],
            "last_result": r["last"],
            "last_result_value": r["value"],
            "last_result_code": r["lab_code"],
        }
        for r in raw
    ]
    headline = (
        f"{gaps} of {patients if patients is not None else '?'} active patients with an active {cond.text!r} "
        f"condition ({pct(rate(gaps, patients or 0))}) have no {lab.text!r} result since {cutoff.isoformat()} "
        f"({months} months); {never} have none on record."
    )
    lab_codes = ", ".join(f"{s}|{c}" for s, c in lab.codes)
    definition = {
        "as_of": ctx.today.isoformat(),
        "since": cutoff.isoformat(),
        "time_zone": TIME_ZONE,
        "resolution": {"condition": cond.rule, "lab": lab.rule},
        "patients": "Patients with Patient.active = true and not deceased.",
        "condition": (
            f"A Condition with a coding among the {len(cond.codes)} resolved codes (see resolution; ICD-10-CM "
            "codes include every code below them), clinicalStatus active, recurrence or relapse, "
            "verificationStatus not refuted or entered-in-error."
        ),
        "gap": (
            f"No Observation with a coding among the resolved lab codes ({lab_codes}) "
            f"with status final, amended or corrected whose effective local date is on or after {cutoff.isoformat()} "
            f"(today minus {months} calendar months)."
        ),
        "order": "never tested first, then oldest last result; limit/offset page the list.",
        "sources": ["condition", "observation", "patient"],
    }
    summary = {"gaps": gaps, "never_tested": never, "patients": patients}
    return ReportResult(rows, headline, summary, definition, gaps)


register(
    ReportSpec(
        "condition_without_lab",
        "Condition without a recent lab result",
        "Care gap for any condition and lab: active patients with an active `condition` (words such as 'type 2 "
        "diabetes' or 'hypertension', or a code such as E11; ICD-10-CM codes include every code below) and no "
        "result of `lab` (words such as 'HbA1c' or 'LDL', or a LOINC code) in the last `months` months (default "
        "12), never-tested first, with the last result. Words must name one concept exactly (else the error lists "
        "the codes to choose from); definition.resolution says which codes were used.",
        (
            Param("condition", "text", "The condition: words or a code (ICD-10-CM or SNOMED CT).", "type 2 diabetes"),
            Param("lab", "text", "The lab: words or a LOINC code.", "HbA1c"),
            Param("months", "int", "Months a result stays current.", 12, 1, 60),
        ),
        ("condition", "observation", "patient"),
        build_condition_without_lab,
        optional_views=(),
        resolves=(("condition", "condition"), ("lab", "lab")),
    )
)
