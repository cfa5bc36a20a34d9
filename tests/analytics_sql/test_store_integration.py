"""query_sql over the views the real store materializes as resources are written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sql_support import principal

from fhirgate.analytics.sql.policy import grant_views
from fhirgate.analytics.sql.sandbox import SqlSandbox
from fhirgate.config import DataDir
from fhirgate.store.factory import open_store


def _appointment(id: str, patient: str, status: str, day: int) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "id": id,
        "status": status,
        "start": f"2025-03-0{day}T09:00:00-05:00",
        "end": f"2025-03-0{day}T09:30:00-05:00",
        "participant": [
            {"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"},
            {"actor": {"reference": "Practitioner/dr1"}, "status": "accepted"},
        ],
    }


def test_views_follow_the_store_and_the_policy(tmp_path: Path) -> None:
    store = open_store(DataDir(tmp_path))
    try:
        store.write(
            [
                {"resourceType": "Patient", "id": "p1", "name": [{"family": "Smith"}]},
                {"resourceType": "Patient", "id": "p2", "name": [{"family": "Jones"}]},
                {"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "House"}]},
                _appointment("a1", "p1", "noshow", 4),
                _appointment("a2", "p2", "booked", 5),
            ]
        )
        path, key = store.reopen_args()  # type: ignore[attr-defined]
        box = SqlSandbox(path, key=key)
        try:
            user = grant_views(principal("user/*.rs"), box.catalog())
            sql = "SELECT a.id, a.status, p.family FROM appointment a JOIN practitioner p ON p.id = a.practitioner_id"
            assert sorted(box.query(user, sql).rows) == [["a1", "noshow", "House"], ["a2", "booked", "House"]]
            mine = grant_views(principal("launch/patient patient/*.rs", patient="p1"), box.catalog())
            assert box.query(mine, "SELECT id, family FROM patient").rows == [["p1", "Smith"]]
            assert box.query(mine, "SELECT id FROM appointment").rows == [["a1"]]
            store.write([_appointment("a3", "p1", "noshow", 6)])  # a write after the sandbox opened
            assert box.query(mine, "SELECT count(*) FROM appointment").rows == [[2]]
            assert box.query(user, "SELECT count(*) FROM appointment").rows == [[3]]
        finally:
            box.close()
    finally:
        store.close()
