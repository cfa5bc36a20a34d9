"""PostgresStore: the FhirStore backend on PostgreSQL (psycopg 3, pooled connections).

Threading: connections come from a psycopg_pool.ConnectionPool in autocommit mode, one per call; reads
run concurrently. A write runs in one transaction that first takes a transaction-level advisory lock
keyed by the store's schema, so writers of one store are serialized (as SQLite's single writer is):
version pins, preconditions that search, and version assignment all see every earlier commit.
While a write transaction is open on a thread, that thread's reads (a precondition's) use its connection.
"""

# ruff: noqa: S608 - SQL is assembled only from fixed fragments and table names; every value is bound.

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import orjson
import psycopg
import psycopg_pool
from psycopg import sql

from fhirgate.core.fhir.dates import now_instant, parse_date_range
from fhirgate.core.fhir.indexing import IndexRows
from fhirgate.core.fhir.search import SearchQuery, parse_search
from fhirgate.errors import FhirgateError, InvalidInput, StoreError
from fhirgate.store.contract import (
    Expectation,
    PreparedResource,
    Resource,
    SearchPage,
    StoredResource,
    check_version,
    expectation_conflict,
    parse_expect,
)
from fhirgate.store.postgres import query as q
from fhirgate.store.postgres.pool import OPEN_ERRORS, open_pool
from fhirgate.store.postgres.schema import (
    ROW_TABLES,
    SCHEMA_RE,
    SCHEMA_VERSION,
    create_schema,
    drop_load_indexes,
    rebuild_after_load,
)
from fhirgate.store.postgres.writer import delete_index_rows, write_batch, write_prepared

Conn = psycopg.Connection[tuple[Any, ...]]

_ITER_CHUNK = 500
_INCLUDE_LIMIT = 1000
_WRITE_LOCK_SEED = 11


def _row(row: Sequence[Any]) -> StoredResource:
    _, rtype, id_, version, deleted, text = row
    body: Resource = orjson.loads(text)
    return StoredResource(rtype, id_, int(version), str(body["meta"]["lastUpdated"]), body, bool(deleted))


def _extract(resources: Sequence[Resource]) -> list[IndexRows]:
    from fhirgate.core.fhir.extract import extract

    return [extract(r) for r in resources]


def _stored_state(conn: Conn, resource_type: str, id: str) -> tuple[int, bool] | None:
    row = conn.execute(
        "SELECT version, deleted FROM resources WHERE type = %s AND id = %s", (resource_type, id)
    ).fetchone()
    return None if row is None else (int(row[0]), bool(row[1]))


def _enforce(conn: Conn, pins: Sequence[Expectation]) -> None:
    """Raise the first Conflict among the pins (inside the write transaction, under the write lock)."""
    for pin in pins:
        conflict = expectation_conflict(pin, _stored_state(conn, pin[0], pin[1]))
        if conflict is not None:
            raise conflict


class PostgresStore:
    """A FhirStore in one PostgreSQL schema: current resources, history, and search-index tables."""

    def __init__(self, url: str, *, schema: str = "fhirgate", create: bool = True, pool_size: int = 4) -> None:
        """Open a pool on `url` (a libpq URL or conninfo) using `schema`; with `create`, initialise it."""
        if not isinstance(schema, str) or not SCHEMA_RE.match(schema):
            raise InvalidInput("schema", "not a plain lower-case SQL identifier", "[a-z_][a-z0-9_]*, at most 63")
        if pool_size < 1:
            raise InvalidInput("pool_size", "must be at least 1")
        self._schema = schema
        self._url = url
        self._local = threading.local()
        self._initial = False  # inside initial_load: load transactions commit without waiting for the WAL flush
        self._analyzed = False  # initial_load's exit ran ANALYZE and this store has not written since
        try:
            self._pool = open_pool(url, schema, name=f"fhirgate-{schema}", size=pool_size)
        except OPEN_ERRORS:
            raise StoreError(f"cannot connect to PostgreSQL (schema {schema})") from None
        if create or self._outdated():  # an older schema is migrated in place whoever opens it first (serve too)
            try:
                with self._pool.connection() as conn:
                    create_schema(conn, schema)
            except (psycopg.Error, ValueError) as exc:
                self._pool.close()
                detail = str(exc) if isinstance(exc, ValueError) else type(exc).__name__
                raise StoreError(f"cannot initialise store schema {schema}: {detail}") from None

    def _outdated(self) -> bool:
        """Whether the schema holds a store of another schema version (create_schema migrates it or says why not)."""
        try:
            with self._pool.connection() as conn:
                row = conn.execute("SELECT value FROM store_meta WHERE key = 'schema'").fetchone()
        except psycopg.Error:
            return False  # no store here: reads fail as before; the location layer reports a missing store
        return row is not None and row[0] != SCHEMA_VERSION

    def refresh_statistics(self) -> None:
        """ANALYZE every table after a bulk load, so the planner sees the new row counts at once.

        Until autovacuum gets to it, a freshly loaded schema keeps the statistics of an empty one, and the planner
        then drives a compartment search from a whole index table (measured on 1,000 demo patients: the summary's
        vital-signs search took 1,114 ms before ANALYZE and 1.8 ms after). Skipped once right after initial_load,
        whose exit ANALYZEd every table, if this store has written nothing since (load_paths calls both).
        """
        if self._analyzed:  # initial_load's exit just did, and nothing was written through this store since
            self._analyzed = False
            return
        with self._errors("analyze"), self._pool.connection() as conn:
            for table in ("resources", "history", *ROW_TABLES):
                conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))

    def is_empty(self) -> bool:
        """True when the store holds no resource (not even a deleted one)."""
        with self._errors("is_empty"), self._conn() as conn:
            return conn.execute("SELECT 1 FROM resources LIMIT 1").fetchone() is None

    @contextmanager
    def initial_load(self) -> Iterator[None]:
        """A first load into an EMPTY store: search indexes built once at the end; InvalidInput if not empty.

        Inside, the indexes but schema.LOAD_KEPT are dropped (searches stay correct, scanning) and
        write_prepared commits with synchronous_commit off: each batch stays all-or-nothing, but a server crash
        may lose the last batches reported as committed (PostgreSQL docs §30.4, Asynchronous Commit). On exit,
        also on error: every index rebuilt (its synchronous commit flushes the WAL of all earlier batches too)
        and ANALYZE. Interrupted before that, the next PostgresStore(create=True) on the schema rebuilds them.
        """
        with self._errors("initial_load"), self._transaction() as conn:
            if conn.execute("SELECT 1 FROM resources LIMIT 1").fetchone() is not None:
                raise InvalidInput("store", "initial_load needs an empty store", "a new schema")
            drop_load_indexes(conn)
        self._initial = True
        try:
            yield
        finally:
            self._initial = False
            with self._errors("initial_load"):
                rebuild_after_load(self._pool.connection, min(2, self._pool.max_size))
            self._analyzed = True

    def connection_args(self) -> tuple[str, str]:
        """(url, schema) for a worker process that opens its own store (PostgresStore(..., create=False))."""
        return self._url, self._schema

    @property
    def schema(self) -> str:
        """The PostgreSQL schema holding this store's tables."""
        return self._schema

    # -- connections -------------------------------------------------------------------------------

    @contextmanager
    def _conn(self) -> Iterator[Conn]:
        """This thread's write-transaction connection when one is open, else a pooled connection."""
        tx: Conn | None = getattr(self._local, "tx", None)
        if tx is not None:
            yield tx
            return
        with self._pool.connection() as conn:
            yield conn

    @contextmanager
    def _transaction(self) -> Iterator[Conn]:
        if getattr(self._local, "tx", None) is not None:
            raise StoreError("write refused: a write transaction is already open on this thread (a precondition?)")
        self._analyzed = False
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, %s))", (self._schema, _WRITE_LOCK_SEED))
            self._local.tx = conn
            try:
                yield conn
            finally:
                self._local.tx = None

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except FhirgateError:
            raise
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            raise StoreError(f"{what} failed: {type(exc).__name__}") from None

    # -- reads ---------------------------------------------------------------------------------------

    def read(self, resource_type: str, id: str) -> StoredResource | None:
        """The current version, or None when absent or deleted."""
        with self._errors("read"), self._conn() as conn:
            row = conn.execute(
                f"SELECT {q.COLUMNS} FROM resources r WHERE type = %s AND id = %s AND NOT deleted",
                (resource_type, id),
            ).fetchone()
        return None if row is None else _row(row)

    def vread(self, resource_type: str, id: str, version: int) -> StoredResource | None:
        """One historical version (deleted versions included, flagged), or None."""
        return next((v for v in self.history(resource_type, id) if v.version == version), None)

    def history(self, resource_type: str, id: str) -> list[StoredResource]:
        """Every version, newest first (FHIR R4 §3.1.0.4 history)."""
        with self._errors("history"), self._conn() as conn:
            current = conn.execute(
                f"SELECT {q.COLUMNS} FROM resources r WHERE type = %s AND id = %s", (resource_type, id)
            ).fetchone()
            if current is None:
                return []
            older = conn.execute(
                "SELECT rid, %s::text, %s::text, version, deleted, body::text FROM history"
                " WHERE rid = %s ORDER BY version DESC",
                (resource_type, id, current[0]),
            ).fetchall()
        return [_row(current), *(_row(r) for r in older)]

    def iter_type(self, resource_type: str) -> Iterator[StoredResource]:
        """Every current resource of a type, in insertion order, read in chunks (keyset paging)."""
        last = 0
        while True:
            with self._errors("iter_type"), self._conn() as conn:
                rows = conn.execute(
                    f"SELECT {q.COLUMNS} FROM resources r WHERE type = %s AND NOT deleted AND rid > %s"
                    " ORDER BY rid LIMIT %s",
                    (resource_type, last, _ITER_CHUNK),
                ).fetchall()
            yield from (_row(r) for r in rows)
            if len(rows) < _ITER_CHUNK:
                return
            last = rows[-1][0]

    def linked_patients(self, target: str, via: Sequence[tuple[str, str]]) -> frozenset[str]:
        """Patients whose compartment holds a resource of a `via` type referencing `target` (`Type/id`)."""
        ttype, _, tid = target.partition("/")
        out: set[str] = set()
        with self._errors("linked patients"), self._conn() as conn:
            for rtype, code in via:
                if rtype == "Patient":
                    stmt = (
                        "SELECT r.id FROM ix_reference x JOIN resources r ON r.rid = x.rid"
                        " WHERE x.param = %s AND x.tid = %s AND x.ttype = %s AND NOT r.deleted"
                    )
                else:
                    stmt = (
                        "SELECT DISTINCT c.patient FROM ix_reference x JOIN compartment c ON c.rid = x.rid"
                        " WHERE x.param = %s AND x.tid = %s AND x.ttype = %s"
                    )
                out.update(str(r[0]) for r in conn.execute(stmt, (q.param_key(rtype, code), tid, ttype)))
        return frozenset(out)

    def fingerprint(self, resource_type: str) -> str:
        """Changes whenever a resource of the type is written or deleted (for caches of derived facts)."""
        with self._errors("fingerprint"), self._conn() as conn:
            row = conn.execute(
                "SELECT count(*), coalesce(sum(version), 0), count(*) FILTER (WHERE deleted),"
                " max(rid), max(lue) FROM resources WHERE type = %s",
                (resource_type,),
            ).fetchone()
        return "|".join(str(v) for v in (row or ()))

    def counts(self) -> dict[str, int]:
        """Current resources per type."""
        with self._errors("counts"), self._conn() as conn:
            rows = conn.execute(
                "SELECT type, count(*) FROM resources WHERE NOT deleted GROUP BY type ORDER BY type"
            ).fetchall()
        return {str(t): int(n) for t, n in rows}

    # -- writes --------------------------------------------------------------------------------------

    def write(
        self,
        resources: Sequence[Resource],
        *,
        index: Sequence[IndexRows] | None = None,
        expect: Mapping[str, int | None] | None = None,
        precondition: Callable[[], None] | None = None,
    ) -> list[StoredResource]:
        """Create or update resources atomically: all are stored with their index rows, or none.

        `expect` and `precondition` are checked inside the transaction, after the store's write lock is
        taken; the precondition's reads run on this thread's transaction connection.
        """
        pins = parse_expect(expect)
        if not resources and not pins and precondition is None:
            return []
        if index is not None and len(index) != len(resources):
            raise InvalidInput("index", f"{len(index)} index entries for {len(resources)} resources")
        rows = list(index) if index is not None else _extract(resources)  # before the lock: the slow part
        with self._errors("write"), self._transaction() as conn:
            _enforce(conn, pins)
            if precondition is not None:
                precondition()
            if not resources:
                return []
            return write_batch(conn, resources, rows, now_instant())

    def write_prepared(self, items: Sequence[PreparedResource]) -> int:
        """Create or update prepared resources (serialized, indexed by the caller) atomically; returns how many.

        The PreparedWriter capability bulk loaders use: the same transaction and advisory write lock as
        `write`, bodies stored as `write` stores them, new rows and index rows written with COPY.
        """
        if not items:
            return 0
        with self._errors("write"), self._transaction() as conn:
            if self._initial:  # see initial_load
                conn.execute("SET LOCAL synchronous_commit = off")
            return write_prepared(conn, items, now_instant())

    def delete(self, resource_type: str, id: str, *, expect_version: int | None = None) -> bool:
        """Delete the current version (history kept, version incremented); False when nothing to delete."""
        pins: list[Expectation] = []
        if expect_version is not None:
            pins.append((resource_type, id, check_version(expect_version)))
        now = now_instant()
        with self._errors("delete"), self._transaction() as conn:
            _enforce(conn, pins)
            row = conn.execute(
                "SELECT rid, version FROM resources WHERE type = %s AND id = %s AND NOT deleted",
                (resource_type, id),
            ).fetchone()
            if row is None:
                return False
            rid, version = int(row[0]), int(row[1]) + 1
            conn.execute(
                "INSERT INTO history(rid, version, last_updated, deleted, patient_key, body)"
                " SELECT rid, version, last_updated, deleted, patient_key, body FROM resources WHERE rid = %s",
                (rid,),
            )
            delete_index_rows(conn, [rid])
            tomb = {"resourceType": resource_type, "id": id, "meta": {"versionId": str(version), "lastUpdated": now}}
            stamp = datetime.fromisoformat(now.replace("Z", "+00:00"))
            conn.execute(
                "UPDATE resources SET version = %s, last_updated = %s, lue = %s, deleted = TRUE,"
                " body = %s::jsonb, txid = pg_current_xact_id() WHERE rid = %s",
                (version, stamp, stamp.timestamp(), orjson.dumps(tomb).decode(), rid),
            )
        return True

    # -- search --------------------------------------------------------------------------------------

    def search(self, query: SearchQuery) -> SearchPage:
        """Run a parsed search: one page of matches, then _include/_revinclude extras (deduplicated)."""
        with self._errors("search"), self._conn() as conn:
            total: int | None = None
            if query.total or query.count == 0:
                stmt, args = q.count(query)
                found = conn.execute(stmt, args).fetchone()
                total = int(found[0]) if found else 0
            if query.count == 0:
                return SearchPage(matches=[], total=total, next_offset=None)
            stmt, args = q.select(query, query.count + 1)
            rows = conn.execute(stmt, args).fetchall()
            more = len(rows) > query.count
            rows = rows[: query.count]
            included = self._included(conn, query, [int(r[0]) for r in rows]) if rows else []
        return SearchPage(
            matches=[_row(r) for r in rows],
            included=included,
            total=total,
            next_offset=query.offset + query.count if more else None,
        )

    def _included(self, conn: Conn, query: SearchQuery, rids: list[int]) -> list[StoredResource]:
        seen = set(rids)
        out: list[StoredResource] = []
        for inc in query.includes:
            args: list[Any] = [rids, q.param_key(inc.source_type, inc.param)]
            cond = ""
            if inc.target_type is not None:
                cond += " AND x.ttype = %s"
                args.append(inc.target_type)
            if query.compartment is not None:
                cond += " AND " + q.in_compartment("r", query.compartment, args)
            stmt = (
                f"SELECT DISTINCT ON (r.rid) {q.COLUMNS} FROM ix_reference x JOIN resources r"
                " ON r.type = x.ttype AND r.id = x.tid"
                f" WHERE x.rid = ANY(%s::bigint[]) AND x.param = %s AND NOT r.deleted{cond}"
                " ORDER BY r.rid LIMIT %s"
            )
            out += self._add_new(conn.execute(stmt, [*args, _INCLUDE_LIMIT]).fetchall(), seen)
        for inc in query.revincludes:
            args = [rids, q.param_key(inc.source_type, inc.param)]
            cond = ""
            if query.compartment is not None:
                cond = " AND " + q.in_compartment("r", query.compartment, args)
            stmt = (
                f"SELECT DISTINCT ON (r.rid) {q.COLUMNS} FROM resources m JOIN ix_reference x"
                " ON x.tid = m.id AND x.ttype = m.type JOIN resources r ON r.rid = x.rid"
                f" WHERE m.rid = ANY(%s::bigint[]) AND x.param = %s AND NOT r.deleted{cond}"
                " ORDER BY r.rid LIMIT %s"
            )
            out += self._add_new(conn.execute(stmt, [*args, _INCLUDE_LIMIT]).fetchall(), seen)
        return out

    @staticmethod
    def _add_new(rows: list[tuple[Any, ...]], seen: set[int]) -> list[StoredResource]:
        fresh = [r for r in rows if r[0] not in seen]
        seen.update(r[0] for r in fresh)
        return [_row(r) for r in fresh]

    def compartment_page(
        self,
        patient_id: str,
        *,
        types: Sequence[str] | None = None,
        since: str | None = None,
        count: int = 50,
        offset: int = 0,
    ) -> SearchPage:
        """Patient $everything as an index lookup: the Patient first, then its compartment by insertion order."""
        if count < 0 or offset < 0:
            raise InvalidInput("count" if count < 0 else "offset", "must not be negative")
        args: list[Any] = []
        src = q.source(patient_id, args)
        cond = "NOT r.deleted"
        if types:
            cond += " AND r.type = ANY(%s::text[])"
            args.append(list(types))
        if since is not None:
            try:
                cond += " AND r.lue >= %s"
                args.append(parse_date_range(since)[0])
            except ValueError:
                raise InvalidInput("since", "not a FHIR instant", "YYYY-MM-DDThh:mm:ss[.fff]Z") from None
        with self._errors("compartment"), self._conn() as conn:
            found = conn.execute(f"SELECT count(*) FROM {src} WHERE {cond}", args).fetchone()
            total = int(found[0]) if found else 0
            rows = conn.execute(
                f"SELECT {q.COLUMNS} FROM {src} WHERE {cond}"
                " ORDER BY (r.type = 'Patient' AND r.id = %s) DESC, r.rid LIMIT %s OFFSET %s",
                [*args, patient_id, count, offset],
            ).fetchall()
        more = offset + len(rows) < total
        return SearchPage([_row(r) for r in rows], total=total, next_offset=offset + count if more else None)

    def find_ids(self, resource_type: str, params: Mapping[str, str]) -> list[str]:
        """Ids matching simple search params (conditional references such as `identifier=system|value`)."""
        query = parse_search(resource_type, list(params.items()))
        args: list[Any] = []
        cond = q.where(query, args)
        with self._errors("find_ids"), self._conn() as conn:
            rows = conn.execute(f"SELECT r.id FROM resources r WHERE {cond} ORDER BY r.rid LIMIT 1000", args).fetchall()
        return [str(r[0]) for r in rows]

    def close(self) -> None:
        """Close the pool and every connection in it."""
        self._pool.close()
