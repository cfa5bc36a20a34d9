"""The replica file is encrypted and private; Consent and patient confinement still apply on PostgreSQL."""

from __future__ import annotations

import stat
from typing import Any

import apsw
import pytest
from replica_support import PATIENTS, USER, PgPractice, appointment, optout_consent, patient, patient_user, query

from fhirgate.app import build_gateway
from fhirgate.errors import StoreError
from fhirgate.location.backends import open_view_replica
from fhirgate.service.context import RequestContext
from fhirgate.service.gateway import Gateway
from pg_server import needs_postgres

pytestmark = needs_postgres


def _mode(path: Any) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_replica_file_is_encrypted_and_private(pg: PgPractice) -> None:
    gw = build_gateway(pg.location, key=None)
    try:
        query(gw, "SELECT count(*) FROM practitioner")
        pg.store.write([patient("pt-9")])
        query(gw, "SELECT count(*) FROM patient")  # a catch-up write too (WAL)
        replica = gw.analytics.replica
        assert replica is not None and replica.key
        path = replica.path
        assert _mode(path.parent) == 0o700
        for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if name.exists():
                assert _mode(name) == 0o600, name
        key = replica.key
    finally:
        gw.close()
    data = path.read_bytes()
    assert not data.startswith(b"SQLite format 3")
    assert b"House" not in data and b"Fam-pt-1" not in data
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        with pytest.raises(apsw.Error):
            conn.execute("SELECT * FROM practitioner").fetchall()
    finally:
        conn.close()
    from fhirgate.database import open_sqlite

    with pytest.raises(StoreError):
        open_sqlite(path, key="0" * len(key), readonly=True)
    # The key is the location's: a replica reopened through the location reads its own file.
    again = open_view_replica(pg.location, pg.store)
    try:
        assert again.path == path and again.key == key
    finally:
        again.close()


def _not_seen(gw: Gateway) -> set[str]:
    out = gw.run_report(
        RequestContext(USER, name="run_report"), "patients_not_seen", {"today": "2025-06-01", "days": 30}
    )
    return {str(r["patient_id"]) for r in out["rows"]}


def test_an_opt_out_written_after_the_replica_is_built_hides_the_patient_at_once(pg: PgPractice) -> None:
    gw = build_gateway(pg.location, key=None)
    try:
        assert {r[0] for r in query(gw, "SELECT id FROM patient")} == set(PATIENTS)
        assert query(gw, "SELECT count(*) FROM appointment WHERE patient_id = 'pt-1'") == [[3]]
        assert "pt-1" in _not_seen(gw)

        pg.store.write([optout_consent("consent-out", "pt-1")])

        assert {r[0] for r in query(gw, "SELECT id FROM patient")} == set(PATIENTS) - {"pt-1"}
        assert query(gw, "SELECT count(*) FROM appointment WHERE patient_id = 'pt-1'") == [[0]]
        assert query(gw, "SELECT count(DISTINCT patient_id) FROM appointment") == [[len(PATIENTS) - 1]]
        not_seen = _not_seen(gw)
        assert "pt-1" not in not_seen and not_seen == set(PATIENTS) - {"pt-1"}

        # Revoking the opt-out (status inactive) brings the patient back on the next call.
        revoked = optout_consent("consent-out", "pt-1") | {"status": "inactive"}
        pg.store.write([revoked])
        assert {r[0] for r in query(gw, "SELECT id FROM patient")} == set(PATIENTS)
    finally:
        gw.close()


def test_a_patient_scoped_principal_sees_only_its_own_rows_on_postgres(pg: PgPractice) -> None:
    gw = build_gateway(pg.location, key=None)
    try:
        me = patient_user("pt-2")
        assert query(gw, "SELECT id FROM patient", me) == [["pt-2"]]
        assert query(gw, "SELECT DISTINCT patient_id FROM appointment", me) == [["pt-2"]]
        assert query(gw, "SELECT count(*) FROM appointment", me) == [[3]]
        out = gw.query_sql(RequestContext(me, name="query_sql"), "SELECT count(*) FROM appointment")
        assert out["confined_to_patient"] == "pt-2"
        # Another patient's rows written after the replica was built stay out; its own new rows come in.
        pg.store.write([appointment("ap-new-3", "pt-3", "pr-1"), appointment("ap-new-2", "pt-2", "pr-1")])
        assert query(gw, "SELECT count(*) FROM appointment", me) == [[4]]
        assert query(gw, "SELECT id FROM appointment WHERE id = 'ap-new-3'", me) == []
        assert query(gw, "SELECT count(*) FROM appointment WHERE id IN ('ap-new-3', 'ap-new-2')") == [[2]]
    finally:
        gw.close()
