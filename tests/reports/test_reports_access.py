"""Reports under the caller's policy (patient tokens, missing scopes), one audit record per call, and
parameter validation that says what is allowed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from report_oracle import DEMO_TODAY as TODAY
from report_oracle import Raw
from report_policy import unthrottled_policy

from fhirgate.analytics.reports.registry import report_names
from fhirgate.app import views_replica
from fhirgate.audit.record import AuditRecord
from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.scopes import ScopeSet
from fhirgate.demo.generator import DemoSummary
from fhirgate.errors import AccessDenied, InvalidInput
from fhirgate.location import Location
from fhirgate.service.context import RequestContext
from fhirgate.service.gateway import Gateway
from fhirgate.service.governance import Governance
from fhirgate.store.factory import open_store


class ListSink:
    """An audit sink keeping records in memory."""

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    def append(self, record: AuditRecord) -> int:
        self.records.append(record)
        return len(self.records)


def who(scope: str, patient: str | None = None) -> Principal:
    return Principal(sub="t", issuer="urn:test", scopes=ScopeSet.parse(scope), client_id="tests", patient=patient)


@pytest.fixture(scope="module")
def env(demo_dir: tuple[Location, DemoSummary]) -> Iterator[tuple[Gateway, ListSink]]:
    sink = ListSink()
    store = open_store(demo_dir[0], create=False)
    replica = views_replica(demo_dir[0], store)
    gw = Gateway(store, sink, b"k" * 32, governance=Governance(unthrottled_policy(), store), views_replica=replica)
    yield gw, sink
    gw.close()


def call(gw: Gateway, p: Principal, name: Any, **params: Any) -> dict[str, Any]:
    return gw.run_report(RequestContext(p), name, {"today": TODAY.isoformat(), **params})


def _one_patient(raw: Raw) -> str:
    counts: dict[str, int] = {}
    for a in raw.appts:
        if a.patient and a.status == "noshow":
            counts[a.patient] = counts.get(a.patient, 0) + 1
    return max(counts, key=lambda k: counts[k])


@pytest.mark.parametrize("name", report_names())
def test_patient_token_sees_only_its_patient(env: tuple[Gateway, ListSink], raw: Raw, name: str) -> None:
    gw, sink = env
    pid = _one_patient(raw)
    before = len(sink.records)
    out = (
        call(gw, who("launch/patient patient/*.rs", patient=pid), name, period="last_year", limit=200)
        if name
        in ("no_show_summary", "service_volume", "provider_utilization", "cancellations", "new_vs_returning_patients")
        else call(gw, who("launch/patient patient/*.rs", patient=pid), name, limit=200)
    )
    assert out["confined_to_patient"] == pid
    assert "Patient/" + pid in out["definition"]["access"]
    for row in out["rows"]:
        assert row.get("patient_id", pid) == pid
    assert len(sink.records) == before + 1
    rec = sink.records[-1]
    assert rec.outcome == "success" and set(rec.patients) <= {pid} and rec.interaction == "report"


def test_patient_token_numbers_are_that_patients(env: tuple[Gateway, ListSink], raw: Raw) -> None:
    gw, _ = env
    pid = _one_patient(raw)
    out = call(
        gw, who("launch/patient patient/*.rs", patient=pid), "no_show_summary", start="2020-01-01", end="2020-12-31"
    )
    mine = call(
        gw, who("launch/patient patient/*.rs", patient=pid), "no_show_summary", start="2025-11-21", end="2026-11-21"
    )
    expected = sum(
        1
        for a in raw.appts
        if a.patient == pid and a.status == "noshow" and "2025-11-21" <= a.start[:10] < "2026-11-21"
    )
    assert mine["rows"][0]["no_shows"] == expected
    assert out["rows"][0]["no_shows"] == 0
    # No practitioner names or all-practitioner rows leak to a patient token (practitioner view not granted).
    assert "practitioner" not in mine["views"]


def test_without_appointment_scope_the_report_is_refused_naming_the_scope(env: tuple[Gateway, ListSink]) -> None:
    gw, sink = env
    before = len(sink.records)
    with pytest.raises(AccessDenied) as err:
        call(gw, who("user/Patient.rs user/Condition.rs"), "no_show_summary")
    assert "user/Appointment.rs" in err.value.message and err.value.required_scope == "user/Appointment.rs"
    assert "appointment" in err.value.message
    assert len(sink.records) == before + 1 and sink.records[-1].outcome == "denied"
    with pytest.raises(AccessDenied) as err2:
        call(gw, who("launch/patient patient/Patient.rs", patient="pat-000001"), "patients_not_seen")
    assert err2.value.required_scope == "patient/Appointment.rs"


def test_clinical_report_needs_observation_scope(env: tuple[Gateway, ListSink]) -> None:
    gw, _ = env
    with pytest.raises(AccessDenied) as err:
        call(gw, who("user/Patient.rs user/Condition.rs user/Appointment.rs"), "diabetes_without_a1c")
    assert err.value.required_scope == "user/Observation.rs"
    # Appointment reports run without Observation scope.
    assert call(gw, who("user/Patient.rs user/Appointment.rs"), "patients_not_seen")["rows"]


def test_every_call_is_audited_once_with_report_and_params(env: tuple[Gateway, ListSink]) -> None:
    gw, sink = env
    user = who("user/*.rs")
    for name in report_names():
        before = len(sink.records)
        call(gw, user, name)
        assert len(sink.records) == before + 1
        rec = sink.records[-1]
        assert rec.outcome == "success" and rec.interaction == "report"
        assert (rec.query and "appointment" in rec.query) or name in ("diabetes_without_a1c", "condition_without_lab")


@pytest.mark.parametrize(
    ("name", "params", "param", "needle"),
    [
        ("no_such_report", {}, "name", "patients_not_seen, no_show_summary"),
        ("no_show_summary", {"start": "2025-13-01", "end": "2026-01-01"}, "start", "YYYY-MM-DD"),
        ("no_show_summary", {"start": "2025-03-01"}, "end", "both start and end"),
        ("no_show_summary", {"start": "2025-03-08", "end": "2025-03-01"}, "end", "later than start"),
        ("no_show_summary", {"start": "2024-01-01", "end": "2025-06-01"}, "end", "at most 366 days"),
        ("no_show_summary", {"period": "last_decade"}, "period", "last_month"),
        ("no_show_summary", {"period": "last_month", "start": "2025-01-01"}, "period", "not both"),
        ("patients_not_seen", {"days": 0}, "days", "1 to 3650"),
        ("patients_not_seen", {"days": "ninety"}, "days", "integer"),
        ("patients_not_seen", {"limit": 500}, "limit", "1 to 200"),
        ("patients_not_seen", {"practitioner": "x' OR 1=1 --"}, "practitioner", "FHIR id"),
        ("patients_not_seen", {"period": "last_month"}, "params", "days, practitioner"),
        ("cancellations", {"granularity": "hour"}, "granularity", "day, week, month"),
        ("patients_not_seen", {"today": "tomorrow"}, "today", "YYYY-MM-DD"),
    ],
)
def test_bad_params_say_what_is_allowed(
    env: tuple[Gateway, ListSink], name: str, params: dict[str, Any], param: str, needle: str
) -> None:
    gw, sink = env
    before = len(sink.records)
    with pytest.raises(InvalidInput) as err:
        call(gw, who("user/*.rs"), name, **params)
    assert err.value.param == param
    assert needle in err.value.message
    assert len(sink.records) == before + 1 and sink.records[-1].outcome == "invalid"


def test_params_must_be_an_object(env: tuple[Gateway, ListSink]) -> None:
    gw, _ = env
    with pytest.raises(InvalidInput):
        gw.run_report(RequestContext(who("user/*.rs")), "patients_not_seen", ["days", 3])  # type: ignore[arg-type]


def test_period_shortcuts_resolve_against_today(env: tuple[Gateway, ListSink]) -> None:
    gw, _ = env
    user = who("user/*.rs")
    expected = {
        "last_week": ("2026-11-09", "2026-11-16"),  # TODAY is Saturday 2026-11-21
        "this_week": ("2026-11-16", "2026-11-23"),
        "last_month": ("2026-10-01", "2026-11-01"),
        "this_month": ("2026-11-01", "2026-12-01"),
        "last_quarter": ("2026-07-01", "2026-10-01"),
        "this_year": ("2026-01-01", "2027-01-01"),
        "last_7_days": ("2026-11-15", "2026-11-22"),
    }
    for period, (start, end) in expected.items():
        out = call(gw, user, "cancellations", period=period)
        assert (out["params"]["start"], out["params"]["end"]) == (start, end), period
        assert out["definition"]["period"]["start"] == start
