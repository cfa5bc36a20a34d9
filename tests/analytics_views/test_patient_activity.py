"""The patient_activity summary: kept equal to a recomputation from the views on every write path.

The recomputation leaves out appointments, claims and invoices whose raw meta.security carries a sensitive
label (helpers.SENSITIVE), as the summary does; a write that adds or removes such a label moves the numbers.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import orjson
import pytest
from helpers import SENSITIVE, check_rebuild_and_reopen, labelled_ids, q, report_query

from fhirgate.analytics.reports.registry import get_report, run
from fhirgate.errors import ValidationFailed
from fhirgate.store.sqlite.store import SqliteStore

NOT_BILLED = {"draft", "cancelled", "entered-in-error"}


Row = tuple[Any, Any, Any, float, Any, int]


def expected(store: SqliteStore) -> dict[str, Row]:
    """The summary recomputed in Python from the view rows (independent of the maintained SQL), without the
    rows of resources carrying a sensitive label. `active`: the raw Patient resource says active true and
    has no deceased[x] other than deceasedBoolean false (and carries no sensitive label)."""
    out: dict[str, list[Any]] = {}
    hidden = {t: labelled_ids(store, t) for t in ("Patient", "Appointment", "Claim", "Invoice")}

    def row(pid: str) -> list[Any]:
        return out.setdefault(pid, [None, None, 0.0, None, None, 0])

    for item in store.iter_type("Patient"):
        body = item.body
        if body["id"] in hidden["Patient"]:
            continue
        deceased = "deceasedDateTime" in body or body.get("deceasedBoolean") is True
        row(str(body["id"]))[5] = int(body.get("active") is True and not deceased)

    appts = "SELECT id, patient_id, status, start_time, created, practitioner_id FROM appointment"
    for aid, pid, status, start, created, prac in q(store, appts):
        if pid is None or aid in hidden["Appointment"]:
            continue
        r = row(pid)
        if status == "fulfilled" and start is not None and (r[4] is None or start < r[4]):
            r[4] = start
        if status == "fulfilled" and start is not None and (r[3] is None or (start, prac or "") > r[3]):
            r[3] = (start, prac or "")
            r[0] = start
        for value in (start, created):
            if value is not None and (r[1] is None or value > r[1]):
                r[1] = value
    for table, rtype in (("claim_line", "Claim"), ("invoice_line", "Invoice")):
        for rid, pid, status, amount in q(store, f"SELECT id, patient_id, status, amount FROM {table}"):
            if pid is None or rid in hidden[rtype]:
                continue
            r = row(pid)
            if status is not None and status not in NOT_BILLED and amount is not None:
                r[2] += amount
    return {pid: (r[0], r[3][1] if r[3] else None, r[1], round(r[2], 6), r[4], r[5]) for pid, r in out.items()}


def stored(store: SqliteStore) -> dict[str, Row]:
    cols = (
        "patient_id, last_fulfilled_start, last_fulfilled_practitioner, last_activity, lifetime_billed, "
        "first_fulfilled_start, active"
    )
    rows = q(store, f"SELECT {cols} FROM patient_activity")
    return {str(p): (f, fp, a, round(b, 6), ff, act) for p, f, fp, a, b, ff, act in rows}


def _body(store: SqliteStore, rtype: str, id_: str) -> dict[str, Any]:
    found = store.read(rtype, id_)
    assert found is not None
    return copy.deepcopy(found.body)


def test_built_with_the_views(practice: SqliteStore) -> None:
    summary = stored(practice)
    assert summary, "the demo practice has appointments and billing"
    assert summary == expected(practice)


def test_appointment_status_update_moves_last_fulfilled(fresh: SqliteStore) -> None:
    pid, aid, start = q(
        fresh,
        "SELECT a.patient_id, a.id, a.start_time FROM appointment a JOIN patient_activity s "
        "ON s.patient_id = a.patient_id AND s.last_fulfilled_start = a.start_time WHERE a.status = 'fulfilled' "
        "LIMIT 1",
    )[0]
    body = _body(fresh, "Appointment", aid)
    body["status"] = "noshow"
    fresh.write([body])
    after = stored(fresh)
    assert after == expected(fresh)
    assert after[pid][0] is None or after[pid][0] <= start
    body["status"] = "fulfilled"
    fresh.write([body])
    assert stored(fresh)[pid][0] == start


def test_new_appointment_and_claim_for_a_new_patient(fresh: SqliteStore) -> None:
    appt = {"resourceType": "Appointment", "id": "pa-a1", "status": "fulfilled", "start": "2030-01-02T09:00:00Z",
            "end": "2030-01-02T09:30:00Z", "created": "2029-12-01",
            "participant": [{"actor": {"reference": "Patient/pa-new"}, "status": "accepted"}]}  # fmt: skip
    fresh.write([appt])
    got = stored(fresh)
    assert got == expected(fresh)
    assert got["pa-new"][0] is not None and got["pa-new"][0].startswith("2030-01-02")
    assert got["pa-new"][3] == 0


def test_moving_billing_between_patients_updates_both(fresh: SqliteStore) -> None:
    claim_id, _old_pid = q(fresh, "SELECT id, patient_id FROM claim_line WHERE status = 'active' AND amount > 0")[0]
    body = _body(fresh, "Claim", claim_id)
    body["patient"] = {"reference": "Patient/pa-moved"}
    fresh.write([body])
    got = stored(fresh)
    assert got == expected(fresh)
    assert got["pa-moved"][3] > 0


def test_delete_recomputes_and_drops_empty_rows(fresh: SqliteStore) -> None:
    appt = {"resourceType": "Appointment", "id": "pa-d1", "status": "booked", "start": "2031-01-02T09:00:00Z",
            "participant": [{"actor": {"reference": "Patient/pa-del"}, "status": "accepted"}]}  # fmt: skip
    fresh.write([appt])
    assert "pa-del" in stored(fresh)
    assert fresh.delete("Appointment", "pa-d1")
    assert "pa-del" not in stored(fresh)
    claim_id, pid = q(fresh, "SELECT id, patient_id FROM claim_line WHERE amount > 0 LIMIT 1")[0]
    fresh.delete("Claim", claim_id)
    assert stored(fresh) == expected(fresh)
    assert pid in stored(fresh) or pid not in expected(fresh)


def test_rejected_transaction_leaves_the_summary_unchanged(fresh: SqliteStore) -> None:
    before = stored(fresh)
    good = {"resourceType": "Appointment", "id": "pa-r1", "status": "fulfilled", "start": "2032-01-02T09:00:00Z",
            "participant": [{"actor": {"reference": "Patient/pa-rej"}, "status": "accepted"}]}  # fmt: skip
    bad = {"resourceType": "Patient", "id": "bad id!"}
    with pytest.raises(ValidationFailed):
        fresh.write([good, bad])
    assert stored(fresh) == before
    assert "pa-rej" not in before


def test_rebuild_equals_incremental_and_missing_table_is_rebuilt(fresh: SqliteStore) -> None:
    fresh.delete("Claim", str(q(fresh, "SELECT id FROM claim_line LIMIT 1")[0][0]))
    check_rebuild_and_reopen(fresh, "patient_activity", stored, expected(fresh))


PSY = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}


def _billed(store: SqliteStore, claim_id: str) -> float:
    rows = q(store, "SELECT status, amount FROM claim_line WHERE id = ?", (claim_id,))
    return sum(a for s, a in rows if s not in NOT_BILLED and a is not None)


def test_labelled_billing_is_left_out_of_the_demo_summary(practice: SqliteStore) -> None:
    hidden = labelled_ids(practice, "Claim")
    assert hidden, "the demo practice has sensitive-labelled claims"
    billed = "status NOT IN ('draft', 'cancelled', 'entered-in-error')"
    every = q(practice, f"SELECT sum(amount) FROM claim_line WHERE {billed}")
    every_inv = q(practice, f"SELECT coalesce(sum(amount), 0) FROM invoice_line WHERE {billed}")
    total = sum(v[3] for v in stored(practice).values())
    assert total < every[0][0] + every_inv[0][0]  # the labelled claims' amounts are not in the summary
    assert round(total, 6) == round(sum(v[3] for v in expected(practice).values()), 6)


def test_adding_and_removing_a_label_moves_the_patients_total(fresh: SqliteStore) -> None:
    hidden = labelled_ids(fresh, "Claim")
    claim_id, pid = next(
        (c, p)
        for c, p in q(fresh, "SELECT DISTINCT id, patient_id FROM claim_line WHERE status = 'active' AND amount > 0")
        if c not in hidden
    )
    amount = _billed(fresh, claim_id)
    before = stored(fresh)[pid][3]
    body = _body(fresh, "Claim", claim_id)
    body.setdefault("meta", {}).setdefault("security", []).append(PSY)
    fresh.write([body])
    got = stored(fresh)
    assert got == expected(fresh)
    assert round(got.get(pid, (0, 0, 0, 0.0, 0, 0))[3], 6) == round(before - amount, 6)
    # A label outside the sensitive set changes nothing.
    body["meta"]["security"] = [{"system": PSY["system"], "code": "NORDSCLCD"}]
    fresh.write([body])
    assert stored(fresh)[pid][3] == before
    assert stored(fresh) == expected(fresh)


def test_a_patient_whose_only_resources_are_labelled_has_no_row(fresh: SqliteStore) -> None:
    appt = {"resourceType": "Appointment", "id": "pa-l1", "status": "fulfilled", "start": "2030-01-02T09:00:00Z",
            "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]},
            "participant": [{"actor": {"reference": "Patient/pa-lab"}, "status": "accepted"}]}  # fmt: skip
    fresh.write([appt])
    assert "pa-lab" not in stored(fresh)
    assert stored(fresh) == expected(fresh)
    appt["meta"] = {}
    fresh.write([appt])  # the label removed: the patient appears
    assert stored(fresh)["pa-lab"][0] == "2030-01-02T09:00:00Z"
    assert {"R", "PSY"} <= SENSITIVE


def test_a_summary_of_an_older_version_is_rebuilt_on_open(fresh: SqliteStore) -> None:
    from fhirgate.analytics.views import summary

    conn = fresh._conn()
    want = stored(fresh)
    conn.execute(f'DROP INDEX "{summary.INDEX}"')
    conn.execute(f'CREATE INDEX "{summary.NAME}$lifetime_billed" ON {summary.NAME}(lifetime_billed)')
    conn.execute("UPDATE patient_activity SET lifetime_billed = lifetime_billed + 1")  # as an old build would differ
    assert not summary.current(conn)
    derived = fresh.derived
    assert derived is not None and derived.load(conn)
    fresh.run_write(derived.prepare)
    assert summary.current(conn)
    assert stored(fresh) == want == expected(fresh)


def test_every_patient_has_a_row_with_its_panel_flag(practice: SqliteStore) -> None:
    got = stored(practice)
    patients = {str(i.body["id"]) for i in practice.iter_type("Patient")} - labelled_ids(practice, "Patient")
    assert patients <= set(got)
    assert all(got[p][5] == 1 for p in patients), "the small demo practice's patients are all active"
    assert got == expected(practice)


def test_patient_writes_move_the_panel_flag(fresh: SqliteStore) -> None:
    pid = next(p for p, v in stored(fresh).items() if v[5] == 1 and v[0] is not None)
    body = _body(fresh, "Patient", pid)
    body["active"] = False
    fresh.write([body])
    assert stored(fresh)[pid][5] == 0
    assert stored(fresh) == expected(fresh)
    body["active"] = True
    body["deceasedDateTime"] = "2026-01-02"
    fresh.write([body])
    assert stored(fresh)[pid][5] == 0
    del body["deceasedDateTime"]
    body["deceasedBoolean"] = False
    fresh.write([body])
    assert stored(fresh)[pid][5] == 1
    body.setdefault("meta", {})["security"] = [PSY]  # a labelled Patient is left out: not in the panel
    fresh.write([body])
    assert stored(fresh)[pid][5] == 0
    assert stored(fresh)[pid][0] is not None, "the patient's visits are still summarized"
    assert stored(fresh) == expected(fresh)
    new = {"resourceType": "Patient", "id": "pa-only", "active": True}
    fresh.write([new])
    assert stored(fresh)["pa-only"] == (None, None, None, 0.0, None, 1)
    assert fresh.delete("Patient", "pa-only")
    assert "pa-only" not in stored(fresh)
    assert stored(fresh) == expected(fresh)


# The reports reading patient_activity, with parameter sets that page through the lists (offsets past the
# never-seen patients, past the end) besides the whole list.
TODAY = dt.date(2026, 11, 21)
PAGED = {
    "patients_not_seen": [
        {"days": d, "limit": lim, "offset": off}
        for d in (30, 90, 3650)
        for lim, off in ((200, 0), (3, 0), (2, 3), (4, 9))
    ]
    + [{"days": 90, "limit": 5, "offset": 500}]
    # The practice's own today (some patients seen in the window), one row per page.
    + [{"today": "2026-07-01", "days": d, "limit": 1, "offset": off} for d in (30, 90) for off in range(0, 14, 2)],
    "lapsed_high_value_patients": [
        {"months": m, "limit": lim, "offset": off, "min_billed": b}
        for m in (1, 6, 24)
        for lim, off in ((200, 0), (2, 1), (3, 5))
        for b in (0, 500)
    ],
    "new_vs_returning_patients": [{"period": "last_90_days"}, {"start": "2025-01-01", "end": "2026-01-01"}],
}


@pytest.mark.parametrize("name", sorted(PAGED))
def test_reports_page_the_same_rows_from_the_summary_and_the_views(fresh: SqliteStore, name: str) -> None:
    """Every page and count of the reports is the same read from patient_activity's indexes as from the views,
    with a sensitive-labelled active patient (left out of the summary, withheld from the scan), an active
    patient with no visits and one whose only fulfilled visit is after `today`."""
    seen = next(p for p, v in stored(fresh).items() if v[5] == 1 and v[0] is not None)
    body = _body(fresh, "Patient", seen)
    body.setdefault("meta", {})["security"] = [PSY]
    later = {"resourceType": "Appointment", "id": "pa-later", "status": "fulfilled", "start": "2027-03-01T09:00:00Z",
             "participant": [{"actor": {"reference": "Patient/pa-future"}, "status": "accepted"}]}  # fmt: skip
    fresh.write([body, {"resourceType": "Patient", "id": "pa-idle", "active": True}, later,
                 {"resourceType": "Patient", "id": "pa-future", "active": True}])  # fmt: skip
    conn = fresh._conn()
    hidden = {t: labelled_ids(fresh, t) for t in ("Patient", "Appointment", "Claim", "Invoice")}
    assert hidden["Patient"]
    views = {"patient": "Patient", "appointment": "Appointment", "claim_line": "Claim", "invoice_line": "Invoice"}
    for view, rtype in views.items():
        ids = ", ".join(f"'{i}'" for i in sorted(hidden[rtype])) or "''"
        conn.execute(f"CREATE TEMP VIEW {view} AS SELECT * FROM main.{view} WHERE id NOT IN ({ids})")
    base = ["patient", "appointment", "practitioner", "claim_line", "invoice_line"]
    try:
        for params in PAGED[name]:
            given = {"today": "2026-11-21", **params}
            out = []
            for available in (base, [*base, "patient_activity"]):
                result = run(get_report(name), given, report_query(conn), available=available, today=TODAY)[0]
                out.append(orjson.dumps([result.rows, result.headline, result.summary, result.total_rows]))
            assert out[0] == out[1], (name, params)
    finally:
        for view in views:
            conn.execute(f"DROP VIEW temp.{view}")
