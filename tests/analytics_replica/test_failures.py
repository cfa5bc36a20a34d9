"""A failed catch-up is a clear, audited tool error; the replica recovers once PostgreSQL answers again."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, cast

import psycopg
import pytest
from replica_support import USER, PgPractice, practitioner, query

from fhirgate.app import build_gateway
from fhirgate.errors import StoreError
from fhirgate.mcp.server import build_server
from fhirgate.store.postgres.changes import PgChangeFeed
from mcp import Client
from pg_server import POSTGRES_URL, needs_postgres

pytestmark = needs_postgres

SQL = "SELECT id, family FROM practitioner ORDER BY id"


def _text(result: Any) -> str:
    return " ".join(str(getattr(c, "text", "")) for c in result.content)


async def test_a_refused_catch_up_is_a_clear_audited_tool_error(
    pg: PgPractice, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = build_gateway(pg.location, key=None)
    try:
        server = build_server(gw, transport="in-memory", principal=USER)
        async with Client(server) as client:
            ok = await client.call_tool("query_sql", {"sql": SQL})
            assert not ok.is_error
            pg.store.write([practitioner("pr-1", "Unseen")])

            def refused(self: PgChangeFeed, snapshot: str, types: Collection[str] | None) -> str | None:
                raise StoreError("change feed failed: OperationalError")

            monkeypatch.setattr(PgChangeFeed, "unchanged_until", refused)
            before = gw.audit_sink.count()  # type: ignore[attr-defined]
            for tool, args in (
                ("query_sql", {"sql": SQL}),
                ("list_views", {}),
                ("run_report", {"name": "patients_not_seen", "params": {"days": 30, "today": "2025-06-01"}}),
            ):
                bad = await client.call_tool(tool, args)
                assert bad.is_error, tool
                text = _text(bad)
                assert "Traceback" not in text and 'File "' not in text, text
                assert "change feed failed" in text, text
                assert "Unseen" not in text
            after = gw.audit_sink.tail(3)  # type: ignore[attr-defined]
            assert gw.audit_sink.count() == before + 3  # type: ignore[attr-defined]
            assert [e.record.outcome for e in after] == ["error", "error", "error"]
            assert after[0].record.interaction == "sql.query"

            monkeypatch.undo()  # the feed answers again: the next call catches up
            good = await client.call_tool("query_sql", {"sql": SQL})
            assert not good.is_error
            assert ["pr-1", "Unseen"] in good.structured_content["rows"]
    finally:
        gw.close()


def test_a_dropped_feed_connection_costs_at_most_one_call(pg: PgPractice) -> None:
    gw = build_gateway(pg.location, key=None)
    try:
        query(gw, SQL)
        replica = gw.analytics.replica
        assert replica is not None
        feed = cast(PgChangeFeed, replica._source)
        with feed._pool.connection() as conn:
            pid = conn.info.backend_pid
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        pg.store.write([practitioner("pr-1", "AfterRestart")])
        errors: list[str] = []
        try:  # the first call may meet the dead connection (a clear StoreError); the pool then replaces it
            query(gw, SQL)
        except StoreError as exc:
            errors.append(str(exc))
        assert all("change feed failed" in e for e in errors), errors
        assert ["pr-1", "AfterRestart"] in query(gw, SQL)
    finally:
        gw.close()


def test_a_missing_store_schema_refuses_the_replica_clearly(pg: PgPractice) -> None:
    gw = build_gateway(pg.location, key=None)
    try:
        query(gw, SQL)
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f'ALTER TABLE "{pg.schema}".resources RENAME TO resources_gone')
        try:
            with pytest.raises(StoreError) as info:
                query(gw, SQL)
            assert "Traceback" not in str(info.value)
        finally:
            with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
                admin.execute(f'ALTER TABLE "{pg.schema}".resources_gone RENAME TO resources')
        assert query(gw, SQL)
    finally:
        gw.close()
