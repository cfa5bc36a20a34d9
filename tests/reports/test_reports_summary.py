"""patients_not_seen and lapsed_high_value_patients read the patient_activity summary when the caller may.

Checked against the raw-FHIR oracle: with a `today` before stored fulfilled visits (the summary's latest
fulfilled start is then after the window, so the report must consult the appointment view), with a
caller lacking Claim/Invoice scope (the summary is not offered: the views-only SQL runs), and with a
patient token (the summary is confined to that patient's row, and not offered at all when the patient
may see sensitive labels the summary leaves out). USER is a practice-wide user token under the default
policy (role practice_staff: no sensitive label visible), so it reads the summary: the fast path.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from report_oracle import DEMO_TODAY, Raw, lapsed, patients_not_seen

from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.scopes import ScopeSet
from fhirgate.errors import AccessDenied, FhirgateError
from fhirgate.service.context import RequestContext
from fhirgate.service.gateway import Gateway


def who(scope: str, patient: str | None = None) -> Principal:
    return Principal(sub="t", issuer="urn:test", scopes=ScopeSet.parse(scope), client_id="tests", patient=patient)


USER = who("user/*.rs")
NARROW = who("user/Patient.rs user/Appointment.rs")


def run(gw: Gateway, p: Principal, name: str, today: dt.date, **params: Any) -> dict[str, Any]:
    return gw.run_report(RequestContext(p), name, {"today": today.isoformat(), **params})


@pytest.mark.parametrize("back", [0, 60, 200, 400])
@pytest.mark.parametrize("principal", [USER, NARROW], ids=["summary", "views-only"])
def test_patients_not_seen_for_past_today(gateway: Gateway, raw: Raw, back: int, principal: Principal) -> None:
    today = DEMO_TODAY - dt.timedelta(days=back)
    out = run(gateway, principal, "patients_not_seen", today, days=90, limit=200)
    expected = patients_not_seen(raw, today, 90)
    assert expected
    assert {r["patient_id"]: r["last_visit"] for r in out["rows"]} == expected
    assert out["summary"]["not_seen"] == len(expected)
    assert ("patient_activity" in out["definition"]["sources"]) == (principal is USER)


@pytest.mark.parametrize("back", [0, 200])
def test_lapsed_for_past_today_matches_raw(gateway: Gateway, raw: Raw, back: int) -> None:
    today = DEMO_TODAY - dt.timedelta(days=back)
    out = run(gateway, USER, "lapsed_high_value_patients", today, months=6, limit=200)
    expected = lapsed(raw, today, 6)
    assert [(r["patient_id"], r["lifetime_billed"]) for r in out["rows"]] == expected[:200]
    assert out["summary"]["lapsed_patients"] == len(expected)


PATIENT_SCOPES = "launch/patient patient/Patient.rs patient/Appointment.rs patient/Claim.rs patient/Invoice.rs"


def test_patient_token_reads_its_own_rows_by_scanning(gateway: Gateway, raw: Raw) -> None:
    # Under PATRQT the patient role may see its own sensitive labels (default policy), which the summary
    # leaves out (the demo's psychotherapy claims carry PSY): the summary is not offered, the views are.
    patient = min(a.patient for a in raw.appts if a.patient)
    me = who(PATIENT_SCOPES, patient=patient)
    out = run(gateway, me, "patients_not_seen", DEMO_TODAY, days=3650, limit=200)
    assert "patient_activity" not in out["definition"]["sources"]
    assert {r["patient_id"] for r in out["rows"]} <= {patient}
    with pytest.raises(AccessDenied) as refused:
        gateway.query_sql(RequestContext(me), "SELECT patient_id FROM patient_activity")
    assert refused.value.reason == "governance.labels_in_summary"
    page = gateway.query_sql(RequestContext(me), "SELECT DISTINCT patient_id FROM appointment")
    assert [row[0] for row in page["rows"]] == [patient]


def test_patient_token_without_sensitive_access_sees_only_its_summary_row(gateway: Gateway) -> None:
    # A family member's request (FAMRQT) sees no sensitive label: exactly what the summary leaves out.
    me = dataclasses.replace(who(PATIENT_SCOPES, patient="pat-000001"), purpose_of_use=("FAMRQT",))
    out = run(gateway, me, "patients_not_seen", DEMO_TODAY, days=3650, limit=200)
    assert "patient_activity" in out["definition"]["sources"]
    assert {r["patient_id"] for r in out["rows"]} <= {"pat-000001"}
    page = gateway.query_sql(RequestContext(me), "SELECT patient_id FROM patient_activity")
    assert [row[0] for row in page["rows"]] == ["pat-000001"]


def test_summary_needs_billing_scope(gateway: Gateway) -> None:
    # a user without Claim/Invoice scope is not offered the summary (it holds billing totals)
    with pytest.raises(FhirgateError):
        gateway.query_sql(RequestContext(NARROW), "SELECT lifetime_billed FROM patient_activity")


@pytest.mark.parametrize(
    ("name", "table", "params"),
    [
        ("no_show_summary", "appointment_daily", {"period": "last_90_days"}),
        ("service_volume", "appointment_daily", {"period": "last_90_days"}),
        ("provider_utilization", "appointment_daily", {"period": "last_90_days"}),
        ("cancellations", "appointment_daily", {"period": "last_90_days"}),
        ("new_vs_returning_patients", "patient_activity", {"period": "last_90_days"}),
        ("patients_not_seen", "patient_activity", {"days": 90}),
        ("lapsed_high_value_patients", "patient_activity", {"months": 12}),
    ],
)
def test_practice_wide_user_reads_the_derived_tables(
    gateway: Gateway, name: str, table: str, params: dict[str, Any]
) -> None:
    # The default policy withholds every sensitive label from practice_staff; the derived tables leave
    # out exactly those (present on the demo's claims) and the opted-out patients: the fast path is used.
    out = run(gateway, USER, name, DEMO_TODAY, **params)
    assert table in out["views"], out["views"]
    held = out["withheld"]
    assert {"PSY", "R"} <= set(held["labels"])
