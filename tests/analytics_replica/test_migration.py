"""A version-1 store schema (no resources.txid) is migrated in place when a store opens it; the feed then works."""

from __future__ import annotations

from replica_support import PRACTITIONERS, USER, pg_connect, pg_scalar, practitioner, replica_rows, seed

from fhirgate.app import build_gateway
from fhirgate.location import Location, open_location
from fhirgate.location.backends import open_view_replica
from fhirgate.service.context import RequestContext
from fhirgate.store.factory import open_store
from fhirgate.store.postgres.schema import SCHEMA_VERSION
from pg_server import drop_schema, location_url, needs_postgres, scratch_schema

pytestmark = needs_postgres

PRAC_SQL = "SELECT id, family FROM practitioner ORDER BY id"


def test_a_version_1_schema_is_migrated_and_feeds_a_replica() -> None:
    schema = scratch_schema("fg_replica_v1")
    try:
        location = open_location(location_url(schema)).ensure()
        store = open_store(location)
        try:
            store.write(seed())
        finally:
            store.close()
        with pg_connect(schema) as conn:  # back to version 1: no txid column, no txid index
            conn.execute("ALTER TABLE resources DROP COLUMN txid")
            conn.execute("UPDATE store_meta SET value = '1' WHERE key = 'schema'")
        assert (
            pg_scalar(
                schema,
                "SELECT count(*) FROM information_schema.columns WHERE table_schema = %s "
                "AND table_name = 'resources' AND column_name = 'txid'",
                (schema,),
            )
            == 0
        )

        store = open_store(location)  # PostgresStore(create=True): create_schema migrates
        try:
            assert pg_scalar(schema, "SELECT value FROM store_meta WHERE key = 'schema'") == SCHEMA_VERSION
            assert (
                pg_scalar(
                    schema,
                    "SELECT data_type FROM information_schema.columns WHERE table_schema = %s "
                    "AND table_name = 'resources' AND column_name = 'txid'",
                    (schema,),
                )
                == "xid8"
            )
            assert (
                pg_scalar(
                    schema,
                    "SELECT count(*) FROM pg_indexes WHERE schemaname = %s AND indexname = 'resources_txid'",
                    (schema,),
                )
                == 1
            )
            assert pg_scalar(schema, "SELECT count(*) FROM resources WHERE txid IS NULL") == 0

            replica = open_view_replica(location, store)
            try:
                assert replica_rows(replica.path, replica.key, PRAC_SQL) == sorted(PRACTITIONERS.items())
                store.write([practitioner("pr-1", "Migrated")])
                assert store.delete("Practitioner", "pr-3")
                assert replica.catch_up() == 2
                assert replica_rows(replica.path, replica.key, PRAC_SQL) == [("pr-1", "Migrated"), ("pr-2", "Grey")]
            finally:
                replica.close()
        finally:
            store.close()
        # Opening again does not migrate twice (the version is current).
        again = open_store(location, create=False)
        again.close()
        assert pg_scalar(schema, "SELECT value FROM store_meta WHERE key = 'schema'") == SCHEMA_VERSION
    finally:
        drop_schema(schema)


def _version_1_schema() -> tuple[str, Location]:
    schema = scratch_schema("fg_replica_v1")
    location = open_location(location_url(schema)).ensure()
    store = open_store(location)
    try:
        store.write(seed())
    finally:
        store.close()
    with pg_connect(schema) as conn:
        conn.execute("ALTER TABLE resources DROP COLUMN txid")
        conn.execute("UPDATE store_meta SET value = '1' WHERE key = 'schema'")
    return schema, location


def test_serving_a_version_1_schema_migrates_it() -> None:
    schema, location = _version_1_schema()
    try:
        gw = build_gateway(location, key=None)
        try:
            rows = gw.query_sql(RequestContext(USER, name="query_sql"), PRAC_SQL)["rows"]
            assert [list(r) for r in rows] == [list(kv) for kv in sorted(PRACTITIONERS.items())]
        finally:
            gw.close()
        assert pg_scalar(schema, "SELECT value FROM store_meta WHERE key = 'schema'") == SCHEMA_VERSION
    finally:
        drop_schema(schema)
