"""Shared wording and SQL fragments of the reports: time-zone handling, statuses, billed amounts.

Each definition block a report returns is built from these texts, so the words the model quotes are the
rules the SQL applies.
"""

from __future__ import annotations

from typing import Any

from fhirgate.analytics.reports.params import Period

TIME_ZONE = (
    "Local wall-clock time in each record's own UTC offset, with no conversion: "
    "2025-04-22T14:11:00-05:00 is local date 2025-04-22 (a Tuesday), hour 14. A record is in [start, end) "
    "when its local date is on or after start and before end (text comparison of the FHIR value), so an "
    "appointment at 00:00 local on the start date is in, one at 00:00 local on the end date is out."
)
WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
# Monday-first order of SQLite strftime('%w') values (0 = Sunday).
WEEKDAY_ORDER = (1, 2, 3, 4, 5, 6, 0)
# Claim.status / Invoice.status values that are not (or no longer) a bill (FHIR R4 fm-status, invoice-status).
NOT_BILLED = ("draft", "cancelled", "entered-in-error")
NOT_BILLED_SQL = "('draft', 'cancelled', 'entered-in-error')"
BILLED_DEF = (
    "Billed amount = claim_line.amount (Claim.item.net) + invoice_line.amount (Invoice.lineItem base price "
    "component) over line items whose Claim/Invoice status is not draft, cancelled or entered-in-error."
)
# R4 ValueSet appointment-cancellation-reason (http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason).
CANCEL_REASONS = {
    "pat": "Patient",
    "pat-crs": "Patient: Canceled via automated reminder system",
    "pat-cpp": "Patient: Canceled via Patient Portal",
    "pat-dec": "Patient: Deceased",
    "pat-fb": "Patient: Feeling Better",
    "pat-lt": "Patient: Lack of Transportation",
    "pat-mt": "Patient: Member Terminated",
    "pat-mv": "Patient: Moved",
    "pat-preg": "Patient: Pregnant",
    "pat-swl": "Patient: Scheduled from Wait List",
    "pat-ucp": "Patient: Unhappy/Changed Provider",
    "prov": "Provider",
    "prov-pers": "Provider: Personal",
    "prov-dch": "Provider: Discharged",
    "prov-edu": "Provider: Education/Medical Training",
    "prov-hosp": "Provider: Hospitalized",
    "prov-labs": "Provider: Labs Out of Acceptable Range",
    "prov-mri": "Provider: MRI Screening Form Marked Do Not Proceed",
    "prov-onc": "Provider: Oncology Treatment Plan Changes",
    "maint": "Equipment Maintenance/Repair",
    "meds-inc": "Prep/Med Incomplete",
    "other": "Other",
    "oth-cms": "Other: CMS Therapy Cap Service Not Authorized",
    "oth-err": "Other: Error",
    "oth-fin": "Other: Financial",
    "oth-iv": "Other: Improper IV Access/Infiltrate IV",
    "oth-int": "Other: No Interpreter Available",
    "oth-mu": "Other: Prep/Med/Results Unavailable",
    "oth-room": "Other: Room/Resource Maintenance",
    "oth-oerr": "Other: Schedule Order Error",
    "oth-swie": "Other: Silent Walk In Error",
    "oth-weath": "Other: Weather",
}


def period_in(column: str, period: Period) -> str:
    """SQL: `column` (FHIR date/dateTime text) has a local date in the period."""
    return f"{column} >= '{period.start.isoformat()}' AND {column} < '{period.end.isoformat()}'"


def num(value: Any) -> int:
    """An integer count from a SQL aggregate (NULL -> 0)."""
    return int(value or 0)


def money(value: Any) -> float:
    """A currency amount rounded to cents (NULL -> 0.0)."""
    return round(float(value or 0.0), 2)


def when(period: Period) -> str:
    """The period in words for a headline: '2026-10-01 to 2026-10-31'."""
    from datetime import timedelta

    last = period.end - timedelta(days=1)
    return f"{period.start.isoformat()} to {last.isoformat()}"


def who(names: dict[str, str], practitioner_id: Any) -> str:
    """A practitioner's display name when known, else Practitioner/id."""
    if practitioner_id is None:
        return "no practitioner"
    return names.get(str(practitioner_id)) or f"Practitioner/{practitioner_id}"
