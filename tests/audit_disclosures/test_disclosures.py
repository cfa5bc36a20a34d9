"""Accounting of disclosures from the audit log: filtering, day bounds, exemptions, and ids only."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest
from disclosure_helpers import PHI_ARGS, record

from fhirgate.audit.disclosures import (
    NOT_STATED,
    Disclosure,
    accounting,
    audit_events,
    default_since,
    describe,
    disclosures,
)
from fhirgate.audit.log import AuditLog
from fhirgate.errors import InvalidInput

TODAY = dt.date(2025, 6, 30)
ALL = "2010-01-01"


def ids(items: list[Disclosure]) -> list[str]:
    return [d.request_id for d in items]


def test_only_successful_accesses_naming_the_patient(audit_log: AuditLog) -> None:
    got = disclosures(audit_log, "pat-1", ALL, None, today=TODAY)
    # r03 denied and r11 error are not disclosures; r05 is pat-10's ("pat-1" must not match "pat-10").
    assert ids(got) == ["r01", "r02", "r04", "r06", "r07", "r08", "r09", "r10"]  # oldest first
    assert [d.seq for d in got] == sorted(d.seq for d in got)
    assert ids(disclosures(audit_log, "pat-10", ALL, None, today=TODAY)) == ["r05"]
    assert ids(disclosures(audit_log, "pat-2", ALL, None, today=TODAY)) == ["r02"]
    assert disclosures(audit_log, "pat-99", ALL, None, today=TODAY) == []


def test_default_window_is_six_years(audit_log: AuditLog) -> None:
    got = ids(disclosures(audit_log, "pat-1", today=TODAY))
    assert "r06" not in got and "r01" in got  # 2015 is older than six years before 2025-06-30
    assert default_since(TODAY) == dt.date(2019, 6, 30)
    assert default_since(dt.date(2024, 2, 29)) == dt.date(2018, 2, 28)


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        ("2024-04-10", "2024-06-01", ["r02", "r04"]),  # both bounds inclusive, to the last millisecond
        ("2024-04-11", "2024-05-31", []),
        (dt.date(2024, 7, 2), dt.date(2024, 7, 3), ["r08", "r09"]),
        ("2024-03-01", "2024-03-01", ["r01"]),
    ],
)
def test_since_until_bounds(audit_log: AuditLog, since: object, until: object, expected: list[str]) -> None:
    assert ids(disclosures(audit_log, "pat-1", since, until, today=TODAY)) == expected  # type: ignore[arg-type]


def test_exempt_classification(audit_log: AuditLog) -> None:
    got = {d.request_id: d for d in disclosures(audit_log, "pat-1", ALL, None, today=TODAY)}
    assert got["r01"].exempt_reason == "treatment"
    assert got["r02"].exempt_reason is None  # research is not TPO
    assert got["r04"].exempt_reason == "to the individual"  # the patient's own app
    assert got["r04"].purpose == NOT_STATED
    assert got["r07"].exempt_reason == "operations"  # system|code form
    assert got["r08"].exempt_reason is None  # TREAT mixed with research: not exempt
    assert got["r09"].exempt_reason is None  # TREAT from an unknown code system
    assert got["r10"].exempt_reason == "payment"


def test_recipient_purpose_and_description(audit_log: AuditLog) -> None:
    got = {d.request_id: d for d in disclosures(audit_log, "pat-1", ALL, None, today=TODAY)}
    r01, r02, r07 = got["r01"], got["r02"], got["r07"]
    assert (r01.client_id, r01.user, r01.sub) == ("app-a", "Practitioner/dr-1", "user-7")
    assert r01.description == "read_resource (read); resource types: Observation"
    assert (r02.client_id, r02.user) == ("research-app", "analyst-3")  # no fhirUser: the sub
    assert (
        r02.description
        == "search_resources (search); resource types: Condition, Patient; search parameters: code, patient"
    )
    assert r02.purpose == "HRESCH"
    assert r07.description == "run_report (report); views: care_gaps, patient_activity"
    assert r07.resource_types == ()


def test_output_holds_ids_types_and_codes_only(audit_log: AuditLog) -> None:
    doc = accounting(audit_log, "pat-1", ALL, "2025-06-30", today=TODAY)
    text = orjson.dumps(doc).decode()
    events = orjson.dumps(audit_events(audit_log, "pat-1", ALL, None, today=TODAY)).decode()
    for out in (text, events):
        for value in PHI_ARGS.values():
            assert value not in out
        # Other patients and individual resource ids (which may be other patients') never appear.
        for other in ("pat-2", "pat-3", "pat-10", "cond-p1", "cond-p2", "obs-a", "obs-r"):
            assert other not in out, other
        assert "consent.deny" not in out and "KeyError" not in out


def test_accounting_dict_shape(audit_log: AuditLog) -> None:
    doc = accounting(audit_log, "pat-1", "2024-01-01", "2024-12-31", today=TODAY)
    assert doc["patient"] == "pat-1" and doc["since"] == "2024-01-01" and doc["until"] == "2024-12-31"
    assert doc["count"] == 7 == len(doc["disclosures"])
    assert doc["not_exempt"] == 3  # r02, r08, r09
    first = doc["disclosures"][0]
    assert first["recipient"] == {"client_id": "app-a", "user": "Practitioner/dr-1", "sub": "user-7"}
    assert first["exempt"] is True and first["exempt_reason"] == "treatment"
    assert first["date"] == "2024-03-01T10:00:00.000Z"
    assert "164.528" in doc["note"]
    orjson.dumps(doc)  # JSON-ready


def test_fhir_events_are_per_patient_balp(audit_log: AuditLog) -> None:
    events = audit_events(audit_log, "pat-1", "2024-04-10", "2024-04-10", today=TODAY)
    assert len(events) == 1
    event = events[0]
    assert event["resourceType"] == "AuditEvent"
    patients = [e["what"]["reference"] for e in event["entity"] if e.get("role", {}).get("code") == "1"]
    assert patients == ["Patient/pat-1"]
    assert "meta" not in event  # data entities were removed, so no BALP profile is claimed
    assert any(e.get("what", {}).get("identifier", {}).get("value") == "r02" for e in event["entity"])


@pytest.mark.parametrize("patient", ["", "pat 1", "pat/1", "x" * 65, "Patient/pat-1", None, '"pat-1"'])
def test_bad_patient_id_is_invalid_input(audit_log: AuditLog, patient: object) -> None:
    with pytest.raises(InvalidInput) as err:
        disclosures(audit_log, patient, today=TODAY)  # type: ignore[arg-type]
    assert err.value.param == "patient"


@pytest.mark.parametrize(
    ("since", "until", "param"),
    [
        ("2024-13-01", None, "since"),
        ("yesterday", None, "since"),
        (None, "2024-02-30", "until"),
        ("2024-06-02", "2024-06-01", "since"),
        (dt.datetime(2024, 1, 1), None, "since"),
        (20240101, None, "since"),
    ],
)
def test_bad_dates_are_invalid_input(audit_log: AuditLog, since: object, until: object, param: str) -> None:
    with pytest.raises(InvalidInput) as err:
        disclosures(audit_log, "pat-1", since, until, today=TODAY)  # type: ignore[arg-type]
    assert err.value.param == param


def test_describe_drops_invalid_names() -> None:
    rec = record("rx", "2024-01-01T00:00:00.000Z", ("p",), query_params=["Jane Doe", "code"], resource_type="x y")
    text, types = describe(rec)
    assert "Jane" not in text and "_invalid" not in text and "x y" not in text
    assert types == ("Observation",)
