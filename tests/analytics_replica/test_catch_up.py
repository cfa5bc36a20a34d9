"""The replica catches up before each call: creates, updates, deletes, out-of-order commits, rebuilds."""

from __future__ import annotations

import orjson
import pytest
from replica_support import (
    PATIENTS,
    PRACTITIONERS,
    VISITS,
    PgPractice,
    appointment,
    pg_connect,
    practitioner,
    query,
    replica_rows,
)

from fhirgate.app import build_gateway
from fhirgate.location.backends import open_view_replica
from pg_server import needs_postgres

pytestmark = needs_postgres

PRAC_SQL = "SELECT id, family FROM practitioner ORDER BY id"


def test_create_update_delete_reach_the_next_query_without_a_restart(pg: PgPractice) -> None:
    gw = build_gateway(pg.location, key=None)
    try:
        assert query(gw, PRAC_SQL) == [[i, f] for i, f in sorted(PRACTITIONERS.items())]
        replica = gw.analytics.replica
        assert replica is not None

        pg.store.write([practitioner("pr-new", "Newcomer")])
        assert ["pr-new", "Newcomer"] in query(gw, PRAC_SQL)

        pg.store.write([practitioner("pr-2", "Renamed")])
        rows = query(gw, PRAC_SQL)
        assert ["pr-2", "Renamed"] in rows and ["pr-2", "Grey"] not in rows

        assert pg.store.delete("Practitioner", "pr-3")
        assert [r[0] for r in query(gw, PRAC_SQL)] == ["pr-1", "pr-2", "pr-new"]

        # A view over another type, changed in one transaction with a delete elsewhere.
        n = len(PATIENTS) * VISITS
        assert query(gw, "SELECT count(*) FROM appointment") == [[n]]
        pg.store.write([appointment("ap-x", "pt-1", "pr-1", status="noshow", day=9)])
        assert pg.store.delete("Appointment", "ap-pt-2-0")
        assert query(gw, "SELECT count(*) FROM appointment") == [[n]]
        assert query(gw, "SELECT status FROM appointment WHERE id = 'ap-x'") == [["noshow"]]
        assert query(gw, "SELECT count(*) FROM appointment WHERE id = 'ap-pt-2-0'") == [[0]]
        # Re-creating a deleted resource brings it back.
        pg.store.write([practitioner("pr-3", "Returned")])
        assert ["pr-3", "Returned"] in query(gw, PRAC_SQL)
        assert gw.analytics.replica is replica  # the same replica throughout: caught up, not rebuilt
    finally:
        gw.close()


def _txid(conn_rows: list[tuple[object, ...]]) -> int:
    return int(str(conn_rows[0][0]))


def test_a_transaction_committing_after_a_later_one_is_not_missed(pg: PgPractice) -> None:
    replica = open_view_replica(pg.location, pg.store)
    a = pg_connect(pg.schema, autocommit=False)
    try:
        body = practitioner("pr-1", "LateCommit")
        a.execute("BEGIN")
        rows = a.execute(
            "UPDATE resources SET body = %s::jsonb, version = version + 1, txid = pg_current_xact_id() "
            "WHERE type = 'Practitioner' AND id = 'pr-1' RETURNING txid::text",
            (orjson.dumps(body).decode(),),
        ).fetchall()
        a_txid = _txid(rows)  # A holds the lower transaction id, still open

        pg.store.write([practitioner("pr-b", "EarlyCommit")])  # B: another connection, commits first
        with pg_connect(pg.schema) as other:
            b_txid = _txid(
                other.execute("SELECT txid::text FROM resources WHERE type = 'Practitioner' AND id = 'pr-b'").fetchall()
            )
        # A naive "max txid applied" watermark would skip A after applying B: the test is meaningful.
        assert a_txid < b_txid

        assert replica.catch_up() >= 1
        rows_b = replica_rows(replica.path, replica.key, PRAC_SQL)
        assert ("pr-b", "EarlyCommit") in rows_b
        assert ("pr-1", "House") in rows_b  # A not committed: not visible yet

        a.commit()
        assert replica.catch_up() == 1  # exactly A's row
        rows_a = replica_rows(replica.path, replica.key, PRAC_SQL)
        assert ("pr-1", "LateCommit") in rows_a
        assert ("pr-b", "EarlyCommit") in rows_a
        stored = replica.store.read("Practitioner", "pr-1")
        assert stored is not None and stored.body["name"][0]["family"] == "LateCommit"
        assert replica.catch_up() == 0  # nothing left
    finally:
        a.close()
        replica.close()


def test_a_rolled_back_transaction_leaves_no_trace(pg: PgPractice) -> None:
    replica = open_view_replica(pg.location, pg.store)
    a = pg_connect(pg.schema, autocommit=False)
    try:
        a.execute("BEGIN")
        a.execute(
            "UPDATE resources SET body = %s::jsonb, version = version + 1, txid = pg_current_xact_id() "
            "WHERE type = 'Practitioner' AND id = 'pr-2'",
            (orjson.dumps(practitioner("pr-2", "NeverCommitted")).decode(),),
        )
        pg.store.write([practitioner("pr-c", "Committed")])
        replica.catch_up()
        a.rollback()
        replica.catch_up()
        rows = replica_rows(replica.path, replica.key, PRAC_SQL)
        assert ("pr-2", "Grey") in rows and ("pr-c", "Committed") in rows
    finally:
        a.close()
        replica.close()


@pytest.mark.parametrize("wal_too", [False, True])
def test_a_deleted_replica_file_is_rebuilt_with_the_same_views(pg: PgPractice, wal_too: bool) -> None:
    views = (
        "SELECT id, family FROM practitioner ORDER BY id",
        "SELECT id, family, gender FROM patient ORDER BY id",
        "SELECT id, patient_id, practitioner_id, status FROM appointment ORDER BY id",
    )
    gw = build_gateway(pg.location, key=None)
    try:
        pg.store.write([practitioner("pr-1", "Changed")])
        assert pg.store.delete("Appointment", "ap-pt-1-0")
        before = [query(gw, v) for v in views]
        replica = gw.analytics.replica
        assert replica is not None
        path = replica.path
    finally:
        gw.close()
    assert path.exists()
    path.unlink()
    if wal_too:
        for suffix in ("-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
    gw = build_gateway(pg.location, key=None)
    try:
        after = [query(gw, v) for v in views]
        assert gw.analytics.replica is not None and gw.analytics.replica.path == path
    finally:
        gw.close()
    assert after == before
    assert ["pr-1", "Changed"] in after[0]
    assert all(r[0] != "ap-pt-1-0" for r in after[2])


def test_writes_of_types_no_view_reads_advance_the_position_without_a_mirror(pg: PgPractice) -> None:
    """A probe that finds nothing to apply moves the replica's position to now, so writes of types the views do
    not read are not rescanned by every later probe; a later write of a viewed type is still applied."""
    replica = open_view_replica(pg.location, pg.store)
    try:
        kept = replica._types
        assert kept is not None and "Organization" not in kept and "Practitioner" in kept
        before = replica._position
        pg.store.write([{"resourceType": "Organization", "id": f"org-{i}", "name": f"Org {i}"} for i in range(5)])
        assert replica.catch_up() == 0
        assert replica._position is not None and replica._position != before
        pg.store.write([practitioner("pr-after", "Later")])
        assert replica.catch_up() == 1
        assert ("pr-after", "Later") in replica_rows(replica.path, replica.key, PRAC_SQL)
    finally:
        replica.close()
