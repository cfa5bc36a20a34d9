"""Edge cases on a hand-built practice: period boundaries, UTC offsets, cancelled versus no-show, patients
with no appointments, a patient who moved between providers, zero denominators, billing statuses."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from report_oracle import Raw, diabetes_gaps, lapsed, no_show, patients_not_seen
from report_policy import unthrottled_policy

from fhirgate.app import build_gateway
from fhirgate.config import DataDir
from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.scopes import ScopeSet
from fhirgate.service.context import RequestContext
from fhirgate.service.gateway import Gateway
from fhirgate.store.factory import open_store

TODAY = "2025-03-10"
WEEK = {"start": "2025-03-01", "end": "2025-03-08", "today": TODAY}
USER = Principal(sub="tester", issuer="urn:test", scopes=ScopeSet.parse("user/*.rs"), client_id="tests")
ICD = "http://hl7.org/fhir/sid/icd-10-cm"


def appt(id: str, patient: str, prac: str, status: str, start: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": id,
        "status": status,
        "serviceType": [{"coding": [{"system": "urn:svc", "code": "svc1"}], "text": "Service One"}],
        "start": start,
        "end": start,  # minutesDuration wins for minutes
        "minutesDuration": 30,
        "created": "2024-01-01T09:00:00-05:00",
        "participant": [
            {"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"},
            {"actor": {"reference": f"Practitioner/{prac}"}, "status": "accepted"},
        ],
    }
    if status == "cancelled":
        body["cancelationReason"] = {"coding": [{"code": extra.pop("reason", "pat")}]}
    body.update(extra)
    return body


def patient(id: str, gp: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Patient", "id": id, "active": True, "name": [{"family": id}]}
    if gp:
        body["generalPractitioner"] = [{"reference": f"Practitioner/{gp}"}]
    body.update(extra)
    return body


def condition(
    id: str, pid: str, code: str, *, system: str = ICD, status: str = "active", verif: str = "confirmed"
) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": id,
        "clinicalStatus": {"coding": [{"code": status}]},
        "verificationStatus": {"coding": [{"code": verif}]},
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
    }


def a1c(id: str, pid: str, when: str, status: str = "final") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id,
        "status": status,
        "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": 7.1, "unit": "%"},
    }


def claim(
    id: str, pid: str, start: str, amounts: list[float], status: str = "active", text: str = "Service One"
) -> dict[str, Any]:
    return {
        "resourceType": "Claim",
        "id": id,
        "status": status,
        "use": "claim",
        "type": {"coding": [{"code": "professional"}]},
        "patient": {"reference": f"Patient/{pid}"},
        "created": start,
        "billablePeriod": {"start": start},
        "provider": {"reference": "Practitioner/drA"},
        "priority": {"coding": [{"code": "normal"}]},
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": "Coverage/c1"}}],
        "item": [
            {"sequence": n, "productOrService": {"text": text}, "net": {"value": v, "currency": "USD"}}
            for n, v in enumerate(amounts, 1)
        ],
    }


def invoice(id: str, pid: str, date: str, amount: float, status: str = "balanced") -> dict[str, Any]:
    return {
        "resourceType": "Invoice",
        "id": id,
        "status": status,
        "subject": {"reference": f"Patient/{pid}"},
        "date": date,
        "lineItem": [
            {
                "sequence": 1,
                "chargeItemCodeableConcept": {"text": "Service One"},
                "priceComponent": [{"type": "base", "amount": {"value": amount, "currency": "USD"}}],
            }
        ],
    }


RESOURCES: list[dict[str, Any]] = [
    *({"resourceType": "Practitioner", "id": p, "name": [{"family": p}]} for p in ("drA", "drB", "drC", "drD")),
    patient("pA", "drA"),
    patient("pNone", "drA"),
    patient("pMoved", "drB"),
    patient("pInactive", "drA", active=False),
    patient("pDead", "drA", deceasedBoolean=True),
    patient("pSeen", "drA"),
    patient("pCancelOnly", "drA"),
    patient("pEdge", "drA"),
    patient("pEdge2", "drA"),
    # The week [2025-03-01, 2025-03-08): boundaries and offsets.
    appt("a1", "pA", "drA", "fulfilled", "2025-03-01T00:00:00-05:00"),  # exactly the start: in
    appt("a2", "pA", "drA", "noshow", "2025-03-08T00:00:00-05:00"),  # exactly the end: out
    appt("a3", "pA", "drB", "noshow", "2025-03-07T23:59:00-08:00"),  # local 03-07 (UTC 03-08): in
    appt("a4", "pA", "drA", "cancelled", "2025-03-03T10:00:00-05:00", reason="pat"),  # not in the denominator
    appt("a5", "pA", "drA", "noshow", "2025-02-28T23:30:00-05:00"),  # local 02-28 (UTC 03-01): previous week
    appt("a6", "pA", "drB", "fulfilled", "2025-03-01T00:30:00+02:00"),  # local 03-01 (UTC 02-28): in
    appt("s1", "pSeen", "drA", "fulfilled", "2025-03-05T10:00:00-06:00"),
    appt("s0", "pSeen", "drA", "fulfilled", "2024-01-01T10:00:00-06:00"),
    appt("c1", "pCancelOnly", "drD", "cancelled", "2025-03-04T09:00:00-06:00", reason="prov"),
    # pMoved: drA, then drB; nothing since.
    appt("m1", "pMoved", "drA", "fulfilled", "2024-06-01T09:00:00-05:00", created="2024-05-01T09:00:00-05:00"),
    appt("m2", "pMoved", "drB", "fulfilled", "2024-12-01T09:00:00-06:00", created="2024-11-01T09:00:00-05:00"),
    # The 90-day window before 2025-03-10 starts 2024-12-10.
    appt("e1", "pEdge", "drA", "fulfilled", "2024-12-10T00:00:00-06:00"),  # exactly the window start: seen
    appt("e2", "pEdge2", "drA", "fulfilled", "2024-12-09T23:59:00-06:00", created="2024-12-15T09:00:00-06:00"),
    # Billing.
    claim("cl1", "pMoved", "2024-12-01T09:00:00-06:00", [100.0, 50.0]),
    claim("cl2", "pMoved", "2024-12-01T09:00:00-06:00", [999.0], status="cancelled"),
    claim("cl3", "pA", "2025-03-01T00:00:00-05:00", [100.0]),
    claim("cl4", "pEdge2", "2024-12-09T23:59:00-06:00", [500.0]),
    invoice("i1", "pNone", "2024-01-05T09:00:00-06:00", 80.0),
    invoice("i2", "pNone", "2025-03-08T00:00:00-05:00", 40.0, status="draft"),
    # Diabetes care gaps (6 months before 2025-03-10 = 2024-09-10).
    condition("d1", "pA", "E11.65"),
    a1c("o1", "pA", "2024-09-10T08:00:00-05:00"),  # exactly the cutoff date: current
    condition("d2", "pMoved", "E11.9"),
    a1c("o2", "pMoved", "2024-09-09T23:00:00-05:00"),  # the day before: gap
    condition("d3", "pSeen", "E11.9", status="resolved"),
    condition("d4", "pNone", "E11.9", verif="entered-in-error"),
    condition("d5", "pCancelOnly", "E11.9"),
    a1c("o5", "pCancelOnly", "2025-01-01T08:00:00-05:00", status="cancelled"),  # not a result: never tested
    condition("d6", "pEdge", "E10.9"),  # type 1
    condition("d7", "pEdge2", "44054006", system="http://snomed.info/sct"),  # SNOMED only
    condition("d8", "pDead", "E11.9"),
]


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Raw]]:
    data = DataDir(tmp_path_factory.mktemp("edge")).ensure()
    store = open_store(data)
    try:
        store.write(RESOURCES)
    finally:
        store.close()
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in RESOURCES:
        by_type.setdefault(r["resourceType"], []).append(r)
    by_type.setdefault("Encounter", [])
    gw = build_gateway(data, key=None, policy=unthrottled_policy())
    yield gw, Raw(by_type)
    gw.close()


def run(gw: Gateway, name: str, **params: Any) -> dict[str, Any]:
    return gw.run_report(RequestContext(USER), name, params)


def rows(out: dict[str, Any], dim: str) -> dict[Any, dict[str, Any]]:
    return {r["key"]: r for r in out["rows"] if r["dimension"] == dim}


def test_no_show_boundaries_offsets_and_denominator(edge: tuple[Gateway, Raw]) -> None:
    gw, raw = edge
    out = run(gw, "no_show_summary", **WEEK)
    total = out["rows"][0]
    # a1, a6, s1 fulfilled; a3 no-show; a2 (end instant) and a5 (previous week) out; a4, c1 cancelled.
    assert (total["no_shows"], total["fulfilled"], total["rate"]) == (1, 3, 0.25)
    assert (total["previous_no_shows"], total["previous_fulfilled"], total["previous_rate"]) == (1, 0, 1.0)
    assert total["change"] == -0.75
    prov = rows(out, "provider")
    assert (prov["drA"]["rate"], prov["drA"]["previous_rate"]) == (0.0, 1.0)
    assert prov["drB"]["rate"] == 0.5
    assert prov["drC"]["rate"] is None and prov["drC"]["no_shows"] == 0  # no visits at all
    assert prov["drD"]["rate"] is None  # only a cancellation: zero denominator, not an error
    wd = rows(out, "weekday")
    assert (wd["Saturday"]["fulfilled"], wd["Friday"]["no_shows"], wd["Wednesday"]["fulfilled"]) == (2, 1, 1)
    hours = rows(out, "hour")
    assert hours[0]["fulfilled"] == 2 and hours[23]["no_shows"] == 1 and hours[10]["fulfilled"] == 1
    expected = no_show(raw, dt.date(2025, 3, 1), dt.date(2025, 3, 8))
    assert expected[("total", None)] == (1, 3, 1, 0)
    assert out["definition"]["period"] == {
        "start": "2025-03-01",
        "end_exclusive": "2025-03-08",
        "chosen_by": "start/end",
    }
    assert "25.0%" in out["headline"] and "100.0%" in out["headline"]


def test_no_show_with_no_appointments_in_period(edge: tuple[Gateway, Raw]) -> None:
    gw, _ = edge
    out = run(gw, "no_show_summary", start="2030-01-01", end="2030-02-01", today=TODAY)
    total = out["rows"][0]
    assert (total["no_shows"], total["fulfilled"], total["rate"], total["previous_rate"]) == (0, 0, None, None)
    assert "n/a" in out["headline"]


def test_patients_not_seen_edges(edge: tuple[Gateway, Raw]) -> None:
    gw, raw = edge
    out = run(gw, "patients_not_seen", today=TODAY, days=90, limit=50)
    got = {r["patient_id"]: r["last_visit"] for r in out["rows"]}
    # pNone and pCancelOnly never seen; pMoved last seen by drB; pEdge2 a minute before the window.
    assert got == {
        "pNone": None,
        "pCancelOnly": None,
        "pMoved": "2024-12-01T09:00:00-06:00",
        "pEdge2": "2024-12-09T23:59:00-06:00",
    }
    assert got == patients_not_seen(raw, dt.date(2025, 3, 10), 90)
    assert [r["patient_id"] for r in out["rows"]][:2] == ["pCancelOnly", "pNone"]  # never seen first
    assert out["summary"] == {"not_seen": 4, "never_seen": 2, "panel": 7}  # inactive and deceased excluded
    moved = {r["patient_id"]: r for r in out["rows"]}["pMoved"]
    assert moved["last_visit_practitioner_id"] == "drB" and moved["days_since"] == 99


def test_patients_not_seen_by_practitioner_follows_the_move(edge: tuple[Gateway, Raw]) -> None:
    gw, _ = edge
    by_b = run(gw, "patients_not_seen", today=TODAY, practitioner="drB")
    by_a = run(gw, "patients_not_seen", today=TODAY, practitioner="Practitioner/drA")
    assert [r["patient_id"] for r in by_b["rows"]] == ["pMoved"]
    assert [r["patient_id"] for r in by_a["rows"]] == ["pEdge2"]
    gp_b = run(gw, "patients_not_seen", today=TODAY, practitioner="drB", attribution="general_practitioner")
    assert [r["patient_id"] for r in gp_b["rows"]] == ["pMoved"] and gp_b["summary"]["panel"] == 1


def test_lapsed_billing_statuses_and_created_dates(edge: tuple[Gateway, Raw]) -> None:
    gw, raw = edge
    out = run(gw, "lapsed_high_value_patients", today=TODAY, months=3)
    got = [(r["patient_id"], r["lifetime_billed"]) for r in out["rows"]]
    # pMoved: 150 (cancelled claim excluded); pNone: 80 (draft invoice excluded), no appointments at all;
    # pEdge2 billed 500 but its appointment was created inside the window.
    assert got == [("pMoved", 150.0), ("pNone", 80.0)]
    assert got == lapsed(raw, dt.date(2025, 3, 10), 3)
    assert out["definition"]["lapsed_since"] == "2024-12-10"


def test_service_volume_and_cancellations_edges(edge: tuple[Gateway, Raw]) -> None:
    gw, _ = edge
    vol = run(gw, "service_volume", **WEEK)
    (svc,) = vol["rows"]
    # a1, a3, a4, a6, s1, c1 start in the week; revenue: cl3 (03-01); i2 is a draft and after the week.
    assert (svc["appointments"], svc["fulfilled"], svc["noshow"], svc["cancelled"], svc["revenue"]) == (
        6,
        3,
        1,
        2,
        100.0,
    )
    can = run(gw, "cancellations", **WEEK, granularity="day")
    assert can["summary"] == {"cancelled": 2, "appointments": 6, "rate": 0.3333}
    assert {k: r["cancelled"] for k, r in rows(can, "reason").items()} == {"pat": 1, "prov": 1}
    assert {k: r["cancelled"] for k, r in rows(can, "day").items() if r["cancelled"]} == {
        "2025-03-03": 1,
        "2025-03-04": 1,
    }


def test_utilization_zero_division(edge: tuple[Gateway, Raw]) -> None:
    gw, _ = edge
    out = run(gw, "provider_utilization", **WEEK)
    got = {r["practitioner_id"]: r for r in out["rows"]}
    assert got["drC"]["no_show_share"] is None and got["drC"]["appointments"] == 0
    assert got["drD"]["no_show_share"] is None and got["drD"]["cancelled"] == 1 and got["drD"]["booked_minutes"] == 0
    assert (got["drA"]["fulfilled"], got["drA"]["booked_minutes"], got["drA"]["share_of_visits"]) == (2, 60, 0.6667)


def test_new_vs_returning_edges(edge: tuple[Gateway, Raw]) -> None:
    gw, _ = edge
    out = run(gw, "new_vs_returning_patients", **WEEK)
    total = out["rows"][0]
    assert (total["new_patients"], total["new_patient_visits"]) == (1, 2)  # pA: a1 and a6
    assert (total["returning_patients"], total["returning_patient_visits"]) == (1, 1)  # pSeen


def test_diabetes_edges(edge: tuple[Gateway, Raw]) -> None:
    gw, raw = edge
    out = run(gw, "diabetes_without_a1c", today=TODAY)
    got = {r["patient_id"]: r["last_a1c"] for r in out["rows"]}
    assert got == {"pCancelOnly": None, "pMoved": "2024-09-09T23:00:00-05:00"}
    assert out["summary"] == {"gaps": 2, "never_tested": 1, "diabetics": 3}  # pA, pMoved, pCancelOnly
    dm, gaps = diabetes_gaps(raw, dt.date(2025, 3, 10))
    assert dm == {"pA", "pMoved", "pCancelOnly"} and gaps == got
