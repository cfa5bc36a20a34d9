"""The appointment_daily rollup: kept equal to a recomputation in Python from the appointment view on every write.

The recomputation leaves out opted-out patients' appointments and appointments whose raw meta.security
carries a sensitive label (helpers.SENSITIVE), as the rollup does.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections import Counter
from typing import Any

import orjson
import pytest
from helpers import check_rebuild_and_reopen, labelled_ids, q, report_query

from fhirgate.analytics.reports.registry import get_report, run
from fhirgate.core.policy.consent import ConsentSet
from fhirgate.errors import ValidationFailed
from fhirgate.store.sqlite.store import SqliteStore

Key = tuple[Any, str, Any, Any]


def _minutes(minutes: Any, start: Any, end: Any) -> float | None:
    if minutes is not None:
        return float(minutes)
    if start and end and len(start) >= 16 and len(end) >= 16:
        a = dt.datetime.fromisoformat(start.replace("Z", "+00:00"))
        b = dt.datetime.fromisoformat(end.replace("Z", "+00:00"))
        return float(round((b - a).total_seconds() / 60))
    return None


def optouts(store: SqliteStore) -> frozenset[str]:
    """The opted-out patients, from the raw Consents by the consent module (no period: any opt-out counts)."""
    return ConsentSet.from_resources(s.body for s in store.iter_type("Consent")).patients_opted_out()


def expected(store: SqliteStore) -> dict[Key, tuple[int, float | None, Any]]:
    """(day, dim, status, key) -> (n, minutes, label), from the view rows in plain Python (opt-outs and
    sensitive-labelled appointments left out)."""
    counts: Counter[Key] = Counter()
    minutes: dict[Key, float | None] = {}
    labels: dict[Key, Any] = {}
    rows = q(
        store,
        "SELECT start_time, status, practitioner_id, service_code, service_display, cancel_reason, minutes, "
        "end_time, patient_id, id FROM appointment",
    )
    gone = optouts(store)
    hidden = labelled_ids(store, "Appointment")
    for start, status, prac, svc, display, reason, mins, end, patient, aid in rows:
        if patient in gone or aid in hidden:
            continue
        day = start[:10] if start else None
        hour = start[11:13] if start and len(start) >= 13 else None
        keys: list[tuple[Key, Any]] = [((day, "practitioner", status, prac), None)]
        keys += [((day, "service", status, svc), display), ((day, "hour", status, hour), None)]
        if status == "cancelled":
            keys.append(((day, "reason", status, reason), None))
        m = _minutes(mins, start, end)
        for key, label in keys:
            counts[key] += 1
            if m is not None:
                minutes[key] = (minutes.get(key) or 0.0) + m
            else:
                minutes.setdefault(key, None)
            if label is not None and (labels.get(key) is None or label > labels[key]):
                labels[key] = label
    return {k: (n, minutes.get(k), labels.get(k)) for k, n in counts.items()}


def stored(store: SqliteStore) -> dict[Key, tuple[int, float | None, Any]]:
    rows = q(store, "SELECT day, dim, status, key, n, minutes, label FROM appointment_daily")
    out: dict[Key, tuple[int, float | None, Any]] = {}
    for day, dim, status, key, n, minutes, label in rows:
        assert (day, dim, status, key) not in out, "one row per (day, dim, status, key)"
        out[(day, dim, status, key)] = (n, None if minutes is None else float(minutes), label)
    return out


def _body(store: SqliteStore, rtype: str, id_: str) -> dict[str, Any]:
    found = store.read(rtype, id_)
    assert found is not None
    return copy.deepcopy(found.body)


def test_built_with_the_views(practice: SqliteStore) -> None:
    rollup = stored(practice)
    assert len(rollup) > 100
    assert rollup == expected(practice)
    dims = {k[1] for k in rollup}
    assert dims == {"practitioner", "service", "hour", "reason"}


def test_reschedule_and_status_change_update_both_days(fresh: SqliteStore) -> None:
    sql = "SELECT id, start_time, practitioner_id FROM appointment WHERE status = 'fulfilled' LIMIT 1"
    aid, start, prac = q(fresh, sql)[0]
    body = _body(fresh, "Appointment", aid)
    body["status"] = "cancelled"
    body["cancelationReason"] = {"coding": [{"code": "pat"}]}
    body["start"], body["end"] = "2031-03-04T15:00:00Z", "2031-03-04T15:20:00Z"
    body.pop("minutesDuration", None)
    fresh.write([body])
    got = stored(fresh)
    assert got == expected(fresh)
    assert got[("2031-03-04", "reason", "cancelled", "pat")][0] == 1
    assert got[("2031-03-04", "practitioner", "cancelled", prac)][1] == 20.0
    assert all(v[0] > 0 for v in got.values())
    assert start[:10] != "2031-03-04"


def test_appointment_without_start_and_delete(fresh: SqliteStore) -> None:
    appt = {"resourceType": "Appointment", "id": "ad-1", "status": "proposed",
            "participant": [{"actor": {"reference": "Patient/ad-p"}, "status": "needs-action"}]}  # fmt: skip
    fresh.write([appt])
    got = stored(fresh)
    assert got == expected(fresh)
    assert got[(None, "practitioner", "proposed", None)][0] >= 1
    before = got[(None, "practitioner", "proposed", None)][0]
    assert fresh.delete("Appointment", "ad-1")
    after = stored(fresh)
    assert after == expected(fresh)
    assert after.get((None, "practitioner", "proposed", None), (0,))[0] == before - 1


def test_rejected_transaction_leaves_the_rollup_unchanged(fresh: SqliteStore) -> None:
    before = stored(fresh)
    good = {"resourceType": "Appointment", "id": "ad-r1", "status": "noshow", "start": "2032-01-02T09:00:00Z",
            "participant": [{"actor": {"reference": "Patient/ad-rej"}, "status": "accepted"}]}  # fmt: skip
    with pytest.raises(ValidationFailed):
        fresh.write([good, {"resourceType": "Patient", "id": "bad id!"}])
    assert stored(fresh) == before


def test_rebuild_equals_incremental_and_missing_table_is_rebuilt(fresh: SqliteStore) -> None:
    fresh.delete("Appointment", str(q(fresh, "SELECT id FROM appointment LIMIT 1")[0][0]))
    check_rebuild_and_reopen(fresh, "appointment_daily", stored, expected(fresh))


PSY = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}


def test_labelled_appointments_are_left_out_and_follow_label_changes(fresh: SqliteStore) -> None:
    sql = "SELECT id, start_time, practitioner_id, status FROM appointment WHERE patient_id IS NOT NULL LIMIT 1"
    aid, start, prac, status = q(fresh, sql)[0]
    key = (start[:10], "practitioner", status, prac)
    before = stored(fresh)
    body = _body(fresh, "Appointment", aid)
    body.setdefault("meta", {})["security"] = [PSY]
    fresh.write([body])
    got = stored(fresh)
    assert got == expected(fresh)
    assert got.get(key, (0,))[0] == before[key][0] - 1
    body["meta"]["security"] = [{"system": PSY["system"], "code": "NORDSCLCD"}]  # not a sensitive label
    fresh.write([body])
    assert stored(fresh) == before == expected(fresh)
    body["meta"]["security"] = [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "V"}]
    fresh.write([body])
    assert stored(fresh).get(key, (0,))[0] == before[key][0] - 1
    assert fresh.delete("Appointment", aid)  # deleting a labelled appointment changes nothing more
    assert stored(fresh).get(key, (0,))[0] == before[key][0] - 1
    assert stored(fresh) == expected(fresh)


def test_a_rollup_of_an_older_version_is_rebuilt_on_open(fresh: SqliteStore) -> None:
    from fhirgate.analytics.views import rollup

    body = _body(fresh, "Appointment", str(q(fresh, "SELECT id FROM appointment LIMIT 1")[0][0]))
    body.setdefault("meta", {})["security"] = [PSY]
    fresh.write([body])
    want = stored(fresh)
    conn = fresh._conn()
    conn.execute(f'DROP INDEX "{rollup.INDEX}"')
    conn.execute(f'CREATE INDEX "{rollup.NAME}$dim_day_v2" ON {rollup.NAME}(dim, day)')
    conn.execute("UPDATE appointment_daily SET n = n + 1")
    assert not rollup.current(conn)
    derived = fresh.derived
    assert derived is not None and derived.load(conn)
    fresh.run_write(derived.prepare)
    assert rollup.current(conn)
    assert stored(fresh) == want == expected(fresh)


# Report -> the derived table it reads instead of scanning the views when the caller may read it.
REPORTS = {
    "no_show_summary": "appointment_daily",
    "service_volume": "appointment_daily",
    "provider_utilization": "appointment_daily",
    "cancellations": "appointment_daily",
    "new_vs_returning_patients": "patient_activity",
    "lapsed_high_value_patients": "patient_activity",
    "patients_not_seen": "patient_activity",
}
PERIODS = (
    {"period": "last_90_days"},
    {"period": "last_30_days", "granularity": "day"},
    {"start": "2025-12-01", "end": "2026-11-21", "granularity": "month"},
    {"period": "last_7_days", "granularity": "week"},
)


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_reports_read_the_same_numbers_from_the_derived_tables_and_the_views(practice: SqliteStore, name: str) -> None:
    conn = practice._conn()

    query = report_query(conn)

    base = ["appointment", "practitioner", "claim_line", "invoice_line"]
    # The derived tables leave sensitive-labelled resources out, and the rollup opted-out patients' (the
    # sandbox filters patient_activity by patient): the scanning path reads the views without them.
    gone = ", ".join(f"'{p}'" for p in sorted(optouts(practice)))
    assert gone
    if REPORTS[name] != "appointment_daily":
        gone = "''"
    hidden = {t: labelled_ids(practice, t) for t in ("Appointment", "Claim", "Invoice")}
    assert hidden["Claim"]

    def ids(rtype: str) -> str:
        return ", ".join(f"'{i}'" for i in sorted(hidden[rtype])) or "''"

    conn.execute(
        "CREATE TEMP VIEW appointment AS SELECT * FROM main.appointment "
        f"WHERE (patient_id IS NULL OR patient_id NOT IN ({gone})) AND id NOT IN ({ids('Appointment')})"
    )
    conn.execute(f"CREATE TEMP VIEW claim_line AS SELECT * FROM main.claim_line WHERE id NOT IN ({ids('Claim')})")
    conn.execute(f"CREATE TEMP VIEW invoice_line AS SELECT * FROM main.invoice_line WHERE id NOT IN ({ids('Invoice')})")
    try:
        _compare(name, query, base)
    finally:
        for view in ("appointment", "claim_line", "invoice_line"):
            conn.execute(f"DROP VIEW temp.{view}")


# Reports without a period: their own parameter sets instead.
UNPERIODED = {
    "lapsed_high_value_patients": ({"months": 6, "limit": 200}, {"months": 24, "limit": 200}),
    "patients_not_seen": ({"days": 90, "limit": 200}, {"days": 3650, "limit": 200}),
}


def _compare(name: str, query: Any, base: list[str]) -> None:
    for params in UNPERIODED.get(name, PERIODS):
        given = {"today": "2026-11-21", **params}
        if name != "cancellations":
            given.pop("granularity", None)
        out = []
        for available in (base, [*base, REPORTS[name]]):
            result = run(get_report(name), given, query, available=available, today=dt.date(2026, 11, 21))[0]
            out.append(orjson.dumps([result.rows, result.headline, result.summary]))
        assert out[0] == out[1], (name, params)
