"""Clinical care-gap reports: patients with type 2 diabetes and no recent HbA1c."""

# ruff: noqa: S608 - report SQL inlines only validated dates and integers (see registry).

from __future__ import annotations

from fhirgate.analytics.reports.common import TIME_ZONE, num
from fhirgate.analytics.reports.params import Param, add_months
from fhirgate.analytics.reports.registry import ReportContext, ReportResult, ReportSpec, pct, rate, register, sql_date

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
A1C = "4548-4"  # LOINC Hemoglobin A1c/Hemoglobin.total in Blood
# FHIR R4 condition-clinical: active, recurrence and relapse are the "active" statuses.
ACTIVE_CLINICAL = "('active', 'recurrence', 'relapse')"
# FHIR R4 observation-status values that are results.
RESULT_STATUSES = "('final', 'amended', 'corrected')"


def build_diabetes_without_a1c(ctx: ReportContext) -> ReportResult:
    """Active patients with an active E11.* condition and no HbA1c result on or after today minus M months."""
    months = int(ctx.params["months"])
    cutoff = add_months(ctx.today, -months)
    a1c = (
        f"FROM observation o WHERE o.code = '{A1C}' AND o.patient_id = x.patient_id AND o.system = '{LOINC}' "
        f"AND o.status IN {RESULT_STATUSES}"
    )
    sql = (
        "WITH dm AS (SELECT patient_id, min(code) AS code, min(onset) AS onset FROM condition "
        f"WHERE code >= 'E11' AND code < 'E12' AND system = '{ICD10CM}' AND clinical_status IN {ACTIVE_CLINICAL} "
        "AND coalesce(verification_status, '') NOT IN ('refuted', 'entered-in-error') AND patient_id IS NOT NULL "
        "GROUP BY patient_id), "
        "panel AS (SELECT dm.*, p.family, p.given FROM dm JOIN patient p ON p.id = dm.patient_id "
        "WHERE p.active = 1 AND coalesce(p.deceased, 0) = 0), "
        # The latest result: one backward seek of the (code, patient_id, effective, ...) index per diabetic (the
        # first row passing system and status), not a walk over all of their results; NULLs sort last there, so
        # it is max(effective). y is materialized: one probe per diabetic, and the diabetics are counted from it
        # (not by a second scan of the patient view). The value is looked up only for the page of rows returned.
        f"x AS (SELECT panel.* FROM panel), y AS MATERIALIZED (SELECT x.*, (SELECT o.effective {a1c} "
        "ORDER BY o.effective DESC LIMIT 1) AS last FROM x), "
        "z AS MATERIALIZED (SELECT y.*, count(*) OVER () AS gaps, sum(last IS NULL) OVER () AS never, "
        f"(SELECT count(*) FROM y) AS diabetics FROM y WHERE last IS NULL OR last < {sql_date(cutoff)} "
        f"ORDER BY last IS NOT NULL, last, patient_id{ctx.page_sql()}) "
        f"SELECT z.*, (SELECT o.value FROM observation o WHERE o.code = '{A1C}' AND o.patient_id = z.patient_id "
        f"AND o.system = '{LOINC}' AND o.status IN {RESULT_STATUSES} AND o.effective = z.last LIMIT 1) AS value "
        "FROM z ORDER BY last IS NOT NULL, last, patient_id"
    )
    raw = ctx.query(sql, ctx.limit)
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
    gaps = num(raw[0]["gaps"]) if raw else 0
    never = num(raw[0]["never"]) if raw else 0
    diabetics = num(raw[0]["diabetics"]) if raw else None
    if diabetics is None:
        total_sql = (
            f"SELECT count(DISTINCT c.patient_id) AS n FROM condition c JOIN patient p ON p.id = c.patient_id "
            f"WHERE c.code >= 'E11' AND c.code < 'E12' AND c.system = '{ICD10CM}' AND c.clinical_status IN "
            f"{ACTIVE_CLINICAL} AND coalesce(c.verification_status, '') NOT IN ('refuted', 'entered-in-error') "
            "AND p.active = 1 AND coalesce(p.deceased, 0) = 0"
        )
        diabetics = num(ctx.query(total_sql, 1)[0]["n"]) if ctx.offset == 0 else None
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
