"""The billing_daily rollup: kept equal to a recomputation in Python from the line views on every write, and
service_volume reads the same numbers from it as from scanning the line views.

The recomputation leaves out lines whose Claim/Invoice status is draft, cancelled, entered-in-error or
missing, lines of opted-out patients (by the consent module over the raw Consents) and lines of resources
whose raw meta.security carries a sensitive label (helpers.SENSITIVE), as the rollup does.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import orjson
import pytest
from helpers import labelled_ids, q, report_query

from fhirgate.analytics.reports.registry import get_report, run
from fhirgate.core.policy.consent import ConsentSet
from fhirgate.errors import ValidationFailed
from fhirgate.store.sqlite.store import SqliteStore

Key = tuple[Any, str, Any]
Value = tuple[float | None, int]
NOT_BILLED = {"draft", "cancelled", "entered-in-error", None}
SOURCES = {"claim": ("claim_line", "service_date", "Claim"), "invoice": ("invoice_line", "date", "Invoice")}
PSY = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}
SCOPES = "http://terminology.hl7.org/CodeSystem/consentscope"


def optouts(store: SqliteStore) -> frozenset[str]:
    """The opted-out patients, from the raw Consents by the consent module."""
    return ConsentSet.from_resources(s.body for s in store.iter_type("Consent")).patients_opted_out()


def expected(store: SqliteStore) -> dict[Key, Value]:
    """(day, source, service_display) -> (summed amount or None, lines), from the view rows in plain Python."""
    gone = optouts(store)
    sums: dict[Key, float | None] = {}
    lines: dict[Key, int] = {}
    for source, (view, column, rtype) in SOURCES.items():
        hidden = labelled_ids(store, rtype)
        for when, status, display, amount, patient, id_ in q(
            store, f"SELECT {column}, status, service_display, amount, patient_id, id FROM {view}"
        ):
            if status in NOT_BILLED or patient in gone or id_ in hidden:
                continue
            key = (when[:10] if when is not None else None, source, display)
            lines[key] = lines.get(key, 0) + 1
            if amount is None:
                sums.setdefault(key, None)
            else:
                sums[key] = (sums.get(key) or 0.0) + float(amount)
    return {k: (None if sums[k] is None else round(sums[k] or 0.0, 6), n) for k, n in lines.items()}


def stored(store: SqliteStore) -> dict[Key, Value]:
    out: dict[Key, Value] = {}
    for day, source, display, amount, n in q(
        store, "SELECT day, source, service_display, amount, lines FROM billing_daily"
    ):
        assert (day, source, display) not in out, "one row per (day, source, service_display)"
        out[(day, source, display)] = (None if amount is None else round(float(amount), 6), n)
    return out


def _body(store: SqliteStore, rtype: str, id_: str) -> dict[str, Any]:
    found = store.read(rtype, id_)
    assert found is not None
    return copy.deepcopy(found.body)


def _billed_claim(store: SqliteStore) -> tuple[str, str, str]:
    """(id, service day, patient) of an unlabelled billed claim of a patient who has not opted out."""
    hidden, gone = labelled_ids(store, "Claim"), optouts(store)
    for id_, date, patient in q(
        store,
        "SELECT id, service_date, patient_id FROM claim_line WHERE status = 'active' AND service_date IS NOT NULL",
    ):
        if id_ not in hidden and patient is not None and patient not in gone:
            return str(id_), str(date)[:10], str(patient)
    raise AssertionError("the demo practice has no billed claim")


def _lines(table: dict[Key, Value], day: str, source: str) -> int:
    return sum(n for (d, s, _), (_, n) in table.items() if d == day and s == source)


def test_built_with_the_views(practice: SqliteStore) -> None:
    table = stored(practice)
    assert len(table) > 20
    assert table == expected(practice)
    assert {k[1] for k in table} == {"claim", "invoice"}
    assert all(n > 0 for _, n in table.values())
    # The demo has opted-out patients and labelled claims, so the equality above is not vacuous (statuses
    # that are not billed are written in test_claim_status_change_and_service_date_move).
    assert optouts(practice) and labelled_ids(practice, "Claim")


def test_claim_status_change_and_service_date_move(fresh: SqliteStore) -> None:
    cid, day, _ = _billed_claim(fresh)
    before = stored(fresh)
    body = _body(fresh, "Claim", cid)
    n = len(body["item"])
    body["status"] = "cancelled"
    fresh.write([body])
    got = stored(fresh)
    assert got == expected(fresh)
    assert _lines(got, day, "claim") == _lines(before, day, "claim") - n
    body["status"] = "active"
    body["billablePeriod"] = {"start": "2031-03-04T10:00:00-05:00", "end": "2031-03-04T10:30:00-05:00"}
    fresh.write([body])
    got = stored(fresh)
    assert got == expected(fresh)
    assert _lines(got, "2031-03-04", "claim") == n
    assert _lines(got, day, "claim") == _lines(before, day, "claim") - n
    assert fresh.delete("Claim", cid)
    got = stored(fresh)
    assert got == expected(fresh)
    assert _lines(got, "2031-03-04", "claim") == 0


def test_invoice_added_drafted_and_deleted(fresh: SqliteStore) -> None:
    iid = str(q(fresh, "SELECT id FROM invoice_line WHERE status = 'issued' AND patient_id IS NOT NULL")[0][0])
    body = _body(fresh, "Invoice", iid)
    body["id"], body["date"] = "bd-inv-1", "2032-05-06T09:00:00Z"
    body.pop("meta", None)
    fresh.write([body])
    got = stored(fresh)
    assert got == expected(fresh)
    assert _lines(got, "2032-05-06", "invoice") == len(body["lineItem"])
    body["status"] = "draft"
    fresh.write([body])
    assert _lines(stored(fresh), "2032-05-06", "invoice") == 0
    body["status"] = "balanced"
    fresh.write([body])
    assert _lines(stored(fresh), "2032-05-06", "invoice") == len(body["lineItem"])
    assert fresh.delete("Invoice", "bd-inv-1")
    got = stored(fresh)
    assert got == expected(fresh)
    assert _lines(got, "2032-05-06", "invoice") == 0


def test_rejected_transaction_leaves_the_table_unchanged(fresh: SqliteStore) -> None:
    before = stored(fresh)
    cid, _, _ = _billed_claim(fresh)
    body = _body(fresh, "Claim", cid)
    body["billablePeriod"] = {"start": "2033-01-02"}
    with pytest.raises(ValidationFailed):
        fresh.write([body, {"resourceType": "Patient", "id": "bad id!"}])
    assert stored(fresh) == before


def test_labelled_claims_are_left_out_and_follow_label_changes(fresh: SqliteStore) -> None:
    cid, day, _ = _billed_claim(fresh)
    before = stored(fresh)
    body = _body(fresh, "Claim", cid)
    body.setdefault("meta", {})["security"] = [PSY]
    fresh.write([body])
    got = stored(fresh)
    assert got == expected(fresh)
    assert _lines(got, day, "claim") == _lines(before, day, "claim") - len(body["item"])
    body["meta"]["security"] = [{"system": PSY["system"], "code": "NORDSCLCD"}]  # not a sensitive label
    fresh.write([body])
    assert stored(fresh) == before == expected(fresh)


def test_consent_added_and_revoked(fresh: SqliteStore) -> None:
    _, _, patient = _billed_claim(fresh)
    n = sum(
        int(q(fresh, f"SELECT count(*) FROM {v} WHERE patient_id = ? AND status NOT IN "
              "('draft', 'cancelled', 'entered-in-error')", (patient,))[0][0])
        for v in ("claim_line", "invoice_line")
    )  # fmt: skip
    total = lambda: int(q(fresh, "SELECT sum(lines) FROM billing_daily")[0][0])  # noqa: E731
    before = total()
    consent = {
        "resourceType": "Consent", "id": "bd-optout", "status": "active",
        "scope": {"coding": [{"system": SCOPES, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient}"},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
    }  # fmt: skip
    fresh.write([consent])
    assert patient in optouts(fresh)
    assert total() < before  # at most n: some of the patient's lines may be labelled already
    assert total() >= before - n
    assert stored(fresh) == expected(fresh)
    revoked = copy.deepcopy(consent)
    revoked["status"] = "inactive"
    fresh.write([revoked])
    assert total() == before
    assert stored(fresh) == expected(fresh)
    fresh.write([consent])
    assert fresh.delete("Consent", "bd-optout")
    assert total() == before
    assert stored(fresh) == expected(fresh)


def test_rebuild_equals_incremental_and_old_tables_are_rebuilt(fresh: SqliteStore) -> None:
    from fhirgate.analytics.views import billing

    cid, _, _ = _billed_claim(fresh)
    assert fresh.delete("Claim", cid)
    incremental = stored(fresh)
    fresh.run_write(lambda conn: fresh.derived.rebuild(conn))  # type: ignore[union-attr]
    assert stored(fresh) == incremental == expected(fresh)
    conn = fresh._conn()
    conn.execute("DROP TABLE billing_daily")
    assert billing.excluded_patients(conn) is None
    derived = fresh.derived
    assert derived is not None and derived.load(conn)
    fresh.run_write(derived.prepare)
    assert stored(fresh) == incremental
    # An older version (its versioned index missing), with wrong numbers: rebuilt when the store opens.
    conn.execute(f'DROP INDEX "{billing.INDEX}"')
    conn.execute(f'CREATE INDEX "{billing.NAME}$day" ON {billing.NAME}(day)')
    conn.execute("UPDATE billing_daily SET lines = lines + 1")
    assert not billing.current(conn)
    assert billing.excluded_patients(conn) == frozenset()  # an old table leaves nobody out (as far as known)
    assert derived.load(conn)
    fresh.run_write(derived.prepare)
    assert billing.current(conn)
    assert billing.excluded_patients(conn) == optouts(fresh)
    assert stored(fresh) == incremental


PERIODS = (
    {"period": "last_90_days"},
    {"period": "last_30_days"},
    {"period": "last_7_days"},
    {"start": "2025-07-01", "end": "2026-07-01"},
    {"start": "2026-03-15", "end": "2026-03-16"},
)


def test_service_volume_reads_the_same_numbers_from_billing_daily(practice: SqliteStore) -> None:
    conn = practice._conn()

    query = report_query(conn)

    # The caller billing_daily is offered to: opted-out patients and sensitive-labelled resources withheld.
    gone = ", ".join(f"'{p}'" for p in sorted(optouts(practice)))
    hidden = {t: labelled_ids(practice, t) for t in ("Appointment", "Claim", "Invoice")}

    def ids(rtype: str) -> str:
        return ", ".join(f"'{i}'" for i in sorted(hidden[rtype])) or "''"

    for view, rtype in (("appointment", "Appointment"), ("claim_line", "Claim"), ("invoice_line", "Invoice")):
        conn.execute(
            f"CREATE TEMP VIEW {view} AS SELECT * FROM main.{view} "
            f"WHERE (patient_id IS NULL OR patient_id NOT IN ({gone})) AND id NOT IN ({ids(rtype)})"
        )
    base = ["appointment", "practitioner", "claim_line", "invoice_line"]
    revenue = 0.0
    try:
        for params in PERIODS:
            given = {"today": "2026-07-01", "limit": 200, **params}
            for extra in ([], ["appointment_daily"]):
                out = []
                for available in ([*base, *extra], [*base, *extra, "billing_daily"]):
                    result = run(
                        get_report("service_volume"), given, query, available=available, today=dt.date(2026, 7, 1)
                    )[0]
                    out.append(orjson.dumps([result.rows, result.headline, result.summary]))
                    assert ("billing_daily" in result.definition["sources"]) is ("billing_daily" in available)
                assert out[0] == out[1], params
            revenue = max(revenue, result.summary["revenue"])
    finally:
        for view in ("appointment", "claim_line", "invoice_line"):
            conn.execute(f"DROP VIEW temp.{view}")
    assert revenue > 0  # some period has billed revenue: the comparison is not of empty reports
