"""Views kept current by every write path, atomically with the data; rebuilding gives the same tables."""

from __future__ import annotations

import copy
from pathlib import Path

import orjson
import pytest
from helpers import q, snapshot

from fhirgate.analytics.views.maintenance import PracticeViews
from fhirgate.analytics.views.registry import ViewSpec, builtin_views
from fhirgate.errors import FhirgateError, StoreError, ValidationFailed
from fhirgate.ingest.loader import load_paths
from fhirgate.ingest.payload import prepare_resource
from fhirgate.store.sqlite.store import SqliteStore

BUILTINS = [v.name for v in builtin_views()]


def _current(store: SqliteStore, rtype: str, id_: str) -> dict:
    found = store.read(rtype, id_)
    assert found is not None
    return copy.deepcopy(found.body)


def _first_id(store: SqliteStore, rtype: str, where: str = "1") -> str:
    return str(
        q(store, f"SELECT id FROM resources WHERE type = ? AND deleted = 0 AND {where} ORDER BY rid", (rtype,))[0][0]
    )


def test_update_replaces_the_rows_of_that_resource_only(fresh: SqliteStore) -> None:
    appt_id = _first_id(fresh, "Appointment")
    before = q(fresh, "SELECT count(*) FROM appointment")[0][0]
    appt = _current(fresh, "Appointment", appt_id)
    appt["status"] = "cancelled"
    appt["cancelationReason"] = {"coding": [{"code": "pat"}]}
    fresh.write([appt])
    assert q(fresh, "SELECT status, cancel_reason FROM appointment WHERE id = ?", (appt_id,)) == [("cancelled", "pat")]
    assert q(fresh, "SELECT count(*) FROM appointment")[0][0] == before


def test_update_changes_the_number_of_forEach_rows(fresh: SqliteStore) -> None:
    claim_id = str(q(fresh, "SELECT id FROM claim_line GROUP BY _rid HAVING count(*) >= 2 LIMIT 1")[0][0])
    claim = _current(fresh, "Claim", claim_id)
    claim["item"] = claim["item"][:1]
    fresh.write([claim])
    assert q(fresh, "SELECT count(*) FROM claim_line WHERE id = ?", (claim_id,))[0][0] == 1


def test_delete_removes_rows_and_recreate_brings_them_back(fresh: SqliteStore) -> None:
    obs_id = _first_id(fresh, "Observation")
    body = _current(fresh, "Observation", obs_id)
    assert q(fresh, "SELECT count(*) FROM observation WHERE id = ?", (obs_id,))[0][0] >= 1
    assert fresh.delete("Observation", obs_id)
    assert q(fresh, "SELECT count(*) FROM observation WHERE id = ?", (obs_id,))[0][0] == 0
    body.pop("meta")
    fresh.write([body])
    assert q(fresh, "SELECT count(*) FROM observation WHERE id = ?", (obs_id,))[0][0] >= 1


def test_same_resource_twice_in_one_batch_keeps_the_last_version(fresh: SqliteStore) -> None:
    pid = _first_id(fresh, "Patient")
    a, b = _current(fresh, "Patient", pid), _current(fresh, "Patient", pid)
    a["gender"], b["gender"] = "other", "unknown"
    fresh.write([a, b])
    assert q(fresh, "SELECT gender FROM patient WHERE id = ?", (pid,)) == [("unknown",)]


def test_write_prepared_and_new_types_without_views(fresh: SqliteStore) -> None:
    new = {"resourceType": "Patient", "id": "view-new-1", "gender": "female", "name": [{"family": "Zed"}]}
    other = {"resourceType": "Organization", "id": "view-org-1", "name": "No view for this"}
    fresh.write_prepared([prepare_resource(r, r["resourceType"], r["id"]) for r in (new, other)])
    assert q(fresh, "SELECT family, gender FROM patient WHERE id = 'view-new-1'") == [("Zed", "female")]
    # an update through write_prepared replaces the row
    new["gender"] = "male"
    fresh.write_prepared([prepare_resource(new, "Patient", "view-new-1")])
    assert q(fresh, "SELECT gender FROM patient WHERE id = 'view-new-1'") == [("male",)]


def test_write_rows_maintains_views(fresh: SqliteStore) -> None:
    top, _ = fresh.row_plan()
    body = orjson.dumps({"resourceType": "Patient", "id": "rows-1", "gender": "female"}).decode()
    fresh.write_rows([(top, "Patient", "rows-1", None, body)], {})
    assert q(fresh, "SELECT id, gender, _rid FROM patient WHERE id = 'rows-1'") == [("rows-1", "female", top)]


def test_rejected_batch_leaves_no_view_rows(fresh: SqliteStore) -> None:
    good = {"resourceType": "Patient", "id": "atomic-1", "gender": "female"}
    bad = {"resourceType": "Patient", "id": "bad id!"}
    with pytest.raises(ValidationFailed):
        fresh.write([good, bad])
    assert q(fresh, "SELECT count(*) FROM patient WHERE id = 'atomic-1'")[0][0] == 0


def test_rejected_transaction_bundle_leaves_no_view_rows(fresh: SqliteStore, tmp_path: Path) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
                "resource": {"resourceType": "Patient", "id": "tx-ok", "gender": "male"},
                "request": {"method": "PUT", "url": "Patient/tx-ok"},
            },
            {
                "resource": {
                    "resourceType": "Appointment",
                    "id": "tx-appt",
                    "status": "booked",
                    "participant": [
                        {"actor": {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"}, "status": "accepted"}
                    ],
                },
                "request": {"method": "PUT", "url": "Appointment/tx-appt"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "id": "tx-bad",
                    "status": "not-a-status",
                    "code": {"text": "x"},
                },
                "request": {"method": "PUT", "url": "Observation/tx-bad"},
            },
        ],
    }
    path = tmp_path / "tx.json"
    path.write_bytes(orjson.dumps(bundle))
    summary = load_paths(fresh, [path], workers=0)
    assert summary.rejected and "nothing stored" in summary.rejected[0].reason
    for view, id_ in (("patient", "tx-ok"), ("appointment", "tx-appt"), ("observation", "tx-bad")):
        assert q(fresh, f"SELECT count(*) FROM {view} WHERE id = ?", (id_,))[0][0] == 0
    # the same bundle without the bad entry is stored with its view rows
    bundle["entry"] = bundle["entry"][:2]
    path.write_bytes(orjson.dumps(bundle))
    assert not load_paths(fresh, [path], workers=0).rejected
    assert q(fresh, "SELECT patient_id FROM appointment WHERE id = 'tx-appt'") == [("tx-ok",)]


def test_a_failure_inside_view_maintenance_rolls_the_write_back(fresh: SqliteStore) -> None:
    view = fresh.derived.view("coverage")  # type: ignore[union-attr]
    good_sql = view.insert_sql
    view.insert_sql = good_sql.replace('"coverage"', '"no_such_table"')
    cov = {"resourceType": "Coverage", "id": "cov-y", "status": "active", "beneficiary": {"reference": "Patient/p"},
           "payor": [{"reference": "Organization/o"}]}  # fmt: skip
    try:
        with pytest.raises(StoreError):
            fresh.write([cov])
    finally:
        view.insert_sql = good_sql
    assert fresh.read("Coverage", "cov-y") is None


def test_a_dropped_view_table_is_rebuilt_before_the_next_write(fresh: SqliteStore) -> None:
    fresh._conn().execute('DROP TABLE "coverage"')  # sabotage: inserting rows will fail
    fresh.derived._version = -2  # type: ignore[union-attr]  # but the registry repairs before applying
    cov = {"resourceType": "Coverage", "id": "cov-x", "status": "active", "beneficiary": {"reference": "Patient/p"},
           "payor": [{"reference": "Organization/o"}]}  # fmt: skip
    fresh.write([cov])
    assert q(fresh, "SELECT patient_id FROM coverage WHERE id = 'cov-x'") == [("p",)]


def test_rebuild_equals_incremental(fresh: SqliteStore) -> None:
    # some updates and deletes first, so the incremental tables have history behind them
    pid = _first_id(fresh, "Patient")
    p = _current(fresh, "Patient", pid)
    p["name"] = [{"family": "Renamed", "given": ["A"]}]
    fresh.write([p])
    fresh.delete("Encounter", _first_id(fresh, "Encounter"))
    fresh.delete("Claim", _first_id(fresh, "Claim"))
    incremental = snapshot(fresh, BUILTINS)
    counts = fresh.run_write(lambda conn: fresh.derived.rebuild(conn))  # type: ignore[union-attr]
    assert snapshot(fresh, BUILTINS) == incremental
    assert counts == {n: len(rows) for n, rows in incremental.items()}


def test_initial_load_builds_views_at_the_end_same_as_live(tmp_path: Path, fresh: SqliteStore) -> None:
    resources = [
        r.body for t in ("Patient", "Practitioner", "Appointment", "Claim", "Observation") for r in fresh.iter_type(t)
    ]
    items = [prepare_resource(copy.deepcopy(r), r["resourceType"], r["id"]) for r in resources]
    tables: dict[str, dict[str, list[object]]] = {}
    for mode in ("end", "live"):
        store = SqliteStore(tmp_path / f"{mode}.db", derived=PracticeViews())
        try:
            with store.initial_load(derived=mode):  # type: ignore[arg-type]
                store.write_prepared(items[:500])
                store.write_prepared(items[500:])
                during = q(store, "SELECT count(*) FROM observation")[0][0]
                assert (during == 0) == (mode == "end")
            tables[mode] = snapshot(store, BUILTINS)
        finally:
            store.close()
    assert tables["end"] == tables["live"]
    assert tables["end"]["appointment"] and tables["end"]["observation"]


def test_builtin_definition_change_rebuilds_on_open(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = SqliteStore(path, derived=PracticeViews())
    store.write([{"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1990-01-01"}])
    store.close()
    changed = []
    for spec in builtin_views():
        if spec.name == "patient":
            d = copy.deepcopy(spec.definition)
            d["select"][0]["column"].append(
                {"name": "birth_year", "path": "birthDate.toString().substring(0, 4)", "type": "string"}
            )
            spec = ViewSpec(spec.name, d, True, spec.indexes)
        changed.append(spec)
    store = SqliteStore(path, derived=PracticeViews(changed))
    try:
        assert q(store, "SELECT id, birth_year FROM patient") == [("p1", "1990")]
        patient = next(s for s in changed if s.name == "patient")
        assert q(store, "SELECT hash FROM views_meta WHERE name = 'patient'") == [(patient.digest,)]
    finally:
        store.close()


def test_view_errors_on_one_resource_do_not_block_writes(fresh: SqliteStore) -> None:
    views = fresh.derived
    assert isinstance(views, PracticeViews)
    view = views.view("patient")
    original = view.rows_of

    def boom(resource: dict) -> list[tuple]:
        if resource.get("id") == "explodes":
            raise FhirgateError("evaluation failed")
        return original(resource)

    view.rows_of = boom
    try:
        fresh.write([{"resourceType": "Patient", "id": "explodes"}, {"resourceType": "Patient", "id": "fine"}])
    finally:
        view.rows_of = original
    assert fresh.read("Patient", "explodes") is not None
    assert q(fresh, "SELECT id FROM patient WHERE id IN ('explodes', 'fine')") == [("fine",)]
    assert view.failures >= 1
