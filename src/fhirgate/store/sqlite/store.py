"""SqliteStore: the embedded FhirStore backend (one SQLite file, optionally encrypted with SQLite3MC).

Threading: one apsw connection per thread (threading.local), so readers run concurrently under WAL;
writes are serialized by an in-process lock plus BEGIN IMMEDIATE (SQLite allows one writer anyway).
"""

# ruff: noqa: S608 - SQL is assembled only from fixed fragments and table names; every value is bound.

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Literal, TypeVar

import apsw
import orjson

from fhirgate.core.fhir.dates import now_instant, parse_date_range
from fhirgate.core.fhir.indexing import IndexRows
from fhirgate.core.fhir.search import SearchQuery, parse_search
from fhirgate.database import open_sqlite
from fhirgate.errors import FhirgateError, InvalidInput, StoreError
from fhirgate.store.contract import (
    DerivedTables,
    Expectation,
    MirrorChange,
    Mirrored,
    MirrorPull,
    PreparedResource,
    Resource,
    SearchPage,
    StoredResource,
    check_version,
    expectation_conflict,
    parse_expect,
)
from fhirgate.store.sqlite import relations
from fhirgate.store.sqlite.query import COLUMNS, SqlBuilder
from fhirgate.store.sqlite.schema import (
    begin_initial_load,
    create_schema,
    create_value_indexes,
    drop_value_indexes,
    end_initial_load,
)
from fhirgate.store.sqlite.writer import (
    ChangeLog,
    ParamIds,
    TableRows,
    tombstone,
    write_batch,
    write_prepared,
    write_rows,
)

_ITER_CHUNK = 500
_T = TypeVar("_T")
_INCLUDE_LIMIT = 1000


def _row(row: Any) -> StoredResource:
    _, rtype, id_, version, lu, deleted, body = row
    return StoredResource(rtype, id_, int(version), lu, orjson.loads(body), bool(deleted))


def _scalar(conn: apsw.Connection, sql: str, args: Sequence[Any]) -> int:
    row: Any = conn.execute(sql, args).fetchone()
    return int(row[0])


def _stored_state(conn: apsw.Connection, resource_type: str, id: str) -> tuple[int, bool] | None:
    """(version, deleted) of a resource as stored now, or None when it was never stored."""
    row: Any = conn.execute(
        "SELECT version, deleted FROM resources WHERE type = ? AND id = ?", (resource_type, id)
    ).fetchone()
    return None if row is None else (int(row[0]), bool(row[1]))


def _enforce(conn: apsw.Connection, pins: Sequence[Expectation]) -> None:
    """Raise the first Conflict among the pins (inside the write transaction, so no write can slip between)."""
    for pin in pins:
        conflict = expectation_conflict(pin, _stored_state(conn, pin[0], pin[1]))
        if conflict is not None:
            raise conflict


def _extract(resources: Sequence[Resource]) -> list[IndexRows]:
    from fhirgate.core.fhir.extract import extract

    return [extract(r) for r in resources]


class SqliteStore:
    """A FhirStore in one SQLite file: current resources, history, and per-type search indexes.

    With `derived` (DerivedTables, e.g. the analytics views), every write path keeps those tables
    current inside its own transaction.
    """

    def __init__(
        self, path: Path, *, key: str | None = None, create: bool = True, derived: DerivedTables | None = None
    ) -> None:
        """Open (and with `create`, initialise) the store; create=False opens an existing store's schema as is.

        `derived` is prepared (missing tables built, stale ones rebuilt) only with `create`.
        """
        self._path = Path(path)
        self._key = key
        self._local = threading.local()
        self._conns: list[apsw.Connection] = []
        self._conns_lock = threading.Lock()
        self._write_lock = threading.RLock()
        self._params = ParamIds()
        self._sql = SqlBuilder(self._pid)
        self._closed = False
        self._derived: DerivedTables | None = None
        self._derive_live = True
        conn = self._conn()
        if not create:
            return
        try:
            with self._write_lock:
                create_schema(conn)
        except (apsw.Error, ValueError) as exc:
            self.close()
            raise StoreError(f"{self._path.name}: cannot initialise store schema: {exc}") from None
        if derived is not None:
            try:
                with self._errors("derived tables"):
                    if derived.load(conn):
                        with self._transaction() as tx:
                            derived.prepare(tx)
            except BaseException:
                self.close()
                raise
            self._derived = derived

    # -- connections -------------------------------------------------------------------------------

    def _conn(self) -> apsw.Connection:
        conn: apsw.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StoreError("store is closed")
            conn = open_sqlite(self._path, key=self._key)
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def reopen_args(self) -> tuple[Path, str | None]:
        """(path, key) for a worker process that opens its own read connection (SqliteStore(..., create=False))."""
        return self._path, self._key

    def _pid(self, rtype: str, code: str) -> int:
        return self._params.lookup(self._conn(), rtype, code)

    @contextmanager
    def _transaction(self) -> Iterator[apsw.Connection]:
        conn = self._conn()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                self._params.load(conn)  # ids handed out in this transaction are gone
                raise
            conn.execute("COMMIT")

    @property
    def derived(self) -> DerivedTables | None:
        """The derived tables this store maintains, if any."""
        return self._derived

    def run_write(self, fn: Callable[[apsw.Connection], _T]) -> _T:
        """Run `fn` inside one write transaction (for derived-table administration: add or rebuild a view)."""
        with self._errors("write"), self._transaction() as conn:
            return fn(conn)

    def _changes(self, conn: apsw.Connection) -> ChangeLog | None:
        if self._derived is None or not self._derive_live:
            return None
        return ChangeLog(self._derived.watched(conn))

    def _derive(self, conn: apsw.Connection, changes: ChangeLog | None) -> None:
        if self._derived is not None and changes is not None and changes.items:
            self._derived.apply(conn, changes.items)

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except FhirgateError:
            raise
        except apsw.Error as exc:
            raise StoreError(f"{what} failed: {type(exc).__name__}") from None

    # -- reads ---------------------------------------------------------------------------------------

    def read(self, resource_type: str, id: str) -> StoredResource | None:
        """The current version, or None when absent or deleted."""
        with self._errors("read"):
            row = (
                self._conn()
                .execute(
                    f"SELECT {COLUMNS} FROM resources r WHERE type = ? AND id = ? AND deleted = 0",
                    (resource_type, id),
                )
                .fetchone()
            )
        return None if row is None else _row(row)

    def vread(self, resource_type: str, id: str, version: int) -> StoredResource | None:
        """One historical version (deleted versions included, flagged), or None."""
        return next((v for v in self.history(resource_type, id) if v.version == version), None)

    def history(self, resource_type: str, id: str) -> list[StoredResource]:
        """Every version, newest first (FHIR R4 §3.1.0.4 history)."""
        with self._errors("history"):
            conn = self._conn()
            current = conn.execute(
                f"SELECT {COLUMNS} FROM resources r WHERE type = ? AND id = ?",
                (resource_type, id),
            ).fetchone()
            if current is None:
                return []
            older = conn.execute(
                "SELECT rid, ?, ?, version, lu, deleted, body FROM history WHERE rid = ? ORDER BY version DESC",
                (resource_type, id, current[0]),
            ).fetchall()
        return [_row(current), *(_row(r) for r in older)]

    def iter_type(self, resource_type: str) -> Iterator[StoredResource]:
        """Every current resource of a type, in insertion order, read in chunks (keyset paging)."""
        last = 0
        while True:
            with self._errors("iter_type"):
                rows: list[Any] = (
                    self._conn()
                    .execute(
                        f"SELECT {COLUMNS} FROM resources r WHERE type = ? AND deleted = 0 AND rid > ?"
                        " ORDER BY rid LIMIT ?",
                        (resource_type, last, _ITER_CHUNK),
                    )
                    .fetchall()
                )
            yield from (_row(r) for r in rows)
            if len(rows) < _ITER_CHUNK:
                return
            last = rows[-1][0]

    def linked_patients(self, target: str, via: Sequence[tuple[str, str]]) -> frozenset[str]:
        """Patients linked to `target` (`Type/id`) through the reference search parameters `via`."""
        with self._errors("linked patients"):
            return relations.linked_patients(self._conn(), self._pid, target, via)

    def fingerprint(self, resource_type: str) -> str:
        """Changes whenever a resource of the type is written or deleted (for caches of derived facts)."""
        with self._errors("fingerprint"):
            return relations.fingerprint(self._conn(), resource_type)

    def counts(self) -> dict[str, int]:
        """Current resources per type."""
        with self._errors("counts"):
            rows: list[Any] = (
                self._conn()
                .execute("SELECT type, count(*) FROM resources WHERE deleted = 0 GROUP BY type ORDER BY type")
                .fetchall()
            )
        return {t: int(n) for t, n in rows}

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

        `expect` and `precondition` are checked after BEGIN IMMEDIATE, under the store's write lock, on
        this thread's connection (so a precondition's reads see the transaction and take no lock).
        """
        pins = parse_expect(expect)
        if not resources and not pins and precondition is None:
            return []
        if index is not None and len(index) != len(resources):
            raise InvalidInput("index", f"{len(index)} index entries for {len(resources)} resources")
        rows = list(index) if index is not None else _extract(resources)  # outside the lock: it is the slow part
        with self._errors("write"), self._transaction() as conn:
            _enforce(conn, pins)
            if precondition is not None:
                precondition()
            if not resources:
                return []
            changes = self._changes(conn)
            stored = write_batch(conn, self._params, resources, rows, now_instant(), changes)
            self._derive(conn, changes)
            return stored

    def write_prepared(self, items: Sequence[PreparedResource]) -> int:
        """Create or update prepared resources (serialized, indexed by the caller) atomically; returns how many."""
        if not items:
            return 0
        with self._errors("write"), self._transaction() as conn:
            changes = self._changes(conn)
            written = write_prepared(conn, self._params, items, now_instant(), changes)
            self._derive(conn, changes)
            return written

    def row_plan(self) -> tuple[int, dict[str, dict[str, int]]]:
        """(first free rowid, param ids of every supported type, all registered now) for row-building workers."""
        from fhirgate.core.fhir.definitions import search_params
        from fhirgate.core.fhir.validate import supported_types

        codes = {t: list(search_params(t)) for t in sorted(supported_types())}
        with self._errors("row_plan"), self._transaction() as conn:
            pids = self._params.register_all(conn, codes)
            top = _scalar(conn, "SELECT coalesce(max(rid), 0) + 1 FROM resources", ())
        return top, pids

    def write_rows(
        self, resources: Sequence[tuple[int, str, str, dict[str, Any] | None, str]], tables: TableRows
    ) -> int:
        """Insert new resources with worker-built rowids and index rows, atomically (see writer.write_rows)."""
        if not resources:
            return 0
        with self._errors("write"), self._transaction() as conn:
            changes = self._changes(conn)
            written = write_rows(conn, resources, tables, now_instant(), changes)
            self._derive(conn, changes)
            return written

    def is_empty(self) -> bool:
        """True when the store holds no resource (not even deleted ones)."""
        with self._errors("is_empty"):
            return self._conn().execute("SELECT 1 FROM resources LIMIT 1").fetchone() is None

    @contextmanager
    def initial_load(self, *, derived: Literal["end", "live"] = "end") -> Iterator[None]:
        """A first load into an EMPTY store: indexes built once at the end, no fsync until then.

        Inside: value indexes dropped (but the token index conditional references use), synchronous=OFF.
        Transactions stay atomic; an OS crash or power loss meanwhile may damage the file, acceptable ONLY
        because the store was empty (delete it, load again). On exit, also on error: derived tables rebuilt
        from the loaded resources (derived="end"; "live" maintains them on every write instead, slower,
        see benchmarks/view_maintenance.py), indexes rebuilt, sampled ANALYZE, synchronous=NORMAL, WAL
        checkpointed. InvalidInput when the store is not empty.
        """
        if derived not in ("end", "live"):
            raise InvalidInput("derived", f"unknown mode {derived!r}", "end, live")
        if not self.is_empty():
            raise InvalidInput("store", "initial_load needs an empty store", "a new store file")
        with self._errors("initial_load"), self._write_lock:
            begin_initial_load(self._conn())
            self._derive_live = derived == "live"
        try:
            yield
        finally:
            with self._errors("initial_load"), self._write_lock:
                try:
                    self._derive_live = True
                    if self._derived is not None and derived == "end":
                        with self._transaction() as conn:
                            self._derived.rebuild(conn)
                finally:
                    end_initial_load(self._conn())

    def delete(self, resource_type: str, id: str, *, expect_version: int | None = None) -> bool:
        """Delete the current version (history kept, version incremented); False when nothing to delete.

        With `expect_version`, Conflict (nothing deleted) unless exactly that version is current.
        """
        pins: list[Expectation] = []
        if expect_version is not None:
            pins.append((resource_type, id, check_version(expect_version)))
        with self._errors("delete"), self._transaction() as conn:
            _enforce(conn, pins)
            changes = self._changes(conn)
            deleted = self._delete(conn, resource_type, id, now_instant(), changes)
            self._derive(conn, changes)
        return deleted

    def _delete(self, conn: apsw.Connection, resource_type: str, id: str, now: str, changes: ChangeLog | None) -> bool:
        """Inside a write transaction: delete the live resource, logging it for the derived tables; False if none."""
        row = conn.execute(
            "SELECT rid, version FROM resources WHERE type = ? AND id = ? AND deleted = 0", (resource_type, id)
        ).fetchone()
        if row is None:
            return False
        rid = int(row[0])
        if changes is not None and resource_type in changes.watch:
            changes.items.append((rid, resource_type, None))
        tombstone(conn, rid, resource_type, id, int(row[1]) + 1, now)
        return True

    def mirror(self, key: str, pull: MirrorPull) -> Mirrored:
        """Catch this store up with another store's changes in one write transaction (Mirrored says what it did).

        `key` names the store_meta row holding the position reached in the source; `pull` gets it (None at
        first) and the types the derived tables watch (None without derived tables: all types), yields the
        changed resources in chunks and returns the new position, stored in the same transaction as the
        changes. An analytics replica of a PostgreSQL store is kept this way (analytics/views/replica.py).
        Versions here are this store's own. Concurrent callers (other processes too) are serialized by the
        write lock, and each reads the position inside it, so no change is applied twice or skipped.
        """
        applied = 0
        with self._errors("mirror"), self._transaction() as conn:
            self._params.load(conn)  # another process may have registered search parameters meanwhile
            row = conn.execute("SELECT value FROM store_meta WHERE key = ?", (key,)).fetchone()
            types = self._derived.watched(conn) if self._derived is not None else None
            source = pull(None if row is None else str(row[0]), types)
            try:
                while True:
                    try:
                        chunk = next(source)
                    except StopIteration as end:
                        position = str(end.value)
                        break
                    applied += self._apply_mirrored(conn, chunk)
            finally:
                source.close()
            conn.execute("INSERT OR REPLACE INTO store_meta(key, value) VALUES (?, ?)", (key, position))
        return Mirrored(applied, position, types)

    def _apply_mirrored(self, conn: apsw.Connection, chunk: Sequence[MirrorChange]) -> int:
        now = now_instant()
        changes = self._changes(conn)
        upserts = [body for _, _, body in chunk if body is not None]
        if upserts:
            write_batch(conn, self._params, upserts, _extract(upserts), now, changes)
        for rtype, id_, body in chunk:
            if body is None:
                self._delete(conn, rtype, id_, now, changes)
        self._derive(conn, changes)
        return len(chunk)

    @contextmanager
    def bulk(self) -> Iterator[None]:
        """Drop search indexes for a large initial load and rebuild them on exit (also on error).

        Searches stay correct meanwhile (they scan instead of seek). Only worth it when loading far
        more rows than the store already holds; see benchmarks/sqlite_driver.py.
        """
        with self._errors("bulk"), self._write_lock:
            drop_value_indexes(self._conn())
        try:
            yield
        finally:
            with self._errors("bulk"), self._write_lock:
                conn = self._conn()
                create_value_indexes(conn)
                conn.execute("ANALYZE")

    # -- search --------------------------------------------------------------------------------------

    def search(self, query: SearchQuery) -> SearchPage:
        """Run a parsed search: one page of matches, then _include/_revinclude extras (deduplicated)."""
        with self._errors("search"):
            conn = self._conn()
            total: int | None = None
            if query.total or query.count == 0:
                sql, args = self._sql.count(query)
                total = _scalar(conn, sql, args)
            if query.count == 0:
                return SearchPage(matches=[], total=total, next_offset=None)
            sql, args = self._sql.select(query, query.count + 1)
            rows: list[Any] = conn.execute(sql, args).fetchall()
            more = len(rows) > query.count
            rows = rows[: query.count]
            included = self._included(conn, query, [r[0] for r in rows]) if rows else []
        return SearchPage(
            matches=[_row(r) for r in rows],
            included=included,
            total=total,
            next_offset=query.offset + query.count if more else None,
        )

    def _included(self, conn: apsw.Connection, query: SearchQuery, rids: list[int]) -> list[StoredResource]:
        seen = set(rids)
        out: list[StoredResource] = []
        rid_list = orjson.dumps(rids).decode()
        for inc in query.includes:
            args: list[Any] = [rid_list, self._pid(inc.source_type, inc.param)]
            cond = ""
            if inc.target_type is not None:
                cond += " AND x.ttype = ?"
                args.append(inc.target_type)
            if query.compartment is not None:
                cond += " AND " + self._sql.compartment("r", query.compartment, args)
            sql = (
                f"SELECT DISTINCT {COLUMNS} FROM ix_reference x JOIN resources r"
                " ON r.type = x.ttype AND r.id = x.tid"
                f" WHERE x.rid IN (SELECT value FROM json_each(?)) AND x.pid = ? AND r.deleted = 0{cond}"
                " ORDER BY r.rid LIMIT ?"
            )
            out += self._add_new(conn.execute(sql, [*args, _INCLUDE_LIMIT]).fetchall(), seen)
        for inc in query.revincludes:
            args = [rid_list, self._pid(inc.source_type, inc.param)]
            cond = ""
            if query.compartment is not None:
                cond = " AND " + self._sql.compartment("r", query.compartment, args)
            sql = (
                f"SELECT DISTINCT {COLUMNS} FROM resources m JOIN ix_reference x"
                " ON x.tid = m.id AND x.ttype = m.type JOIN resources r ON r.rid = x.rid"
                f" WHERE m.rid IN (SELECT value FROM json_each(?)) AND x.pid = ? AND r.deleted = 0{cond}"
                " ORDER BY r.rid LIMIT ?"
            )
            out += self._add_new(conn.execute(sql, [*args, _INCLUDE_LIMIT]).fetchall(), seen)
        return out

    @staticmethod
    def _add_new(rows: list[Any], seen: set[int]) -> list[StoredResource]:
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
        source = self._sql.source(patient_id, args)
        where = "r.deleted = 0"
        if types:
            where += f" AND r.type IN ({','.join('?' * len(types))})"
            args += list(types)
        if since is not None:
            try:
                where += " AND r.lue >= ?"
                args.append(parse_date_range(since)[0])
            except ValueError:
                raise InvalidInput("since", "not a FHIR instant", "YYYY-MM-DDThh:mm:ss[.fff]Z") from None
        with self._errors("compartment"):
            conn = self._conn()
            total = _scalar(conn, f"SELECT count(*) FROM {source} WHERE {where}", args)
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM {source} WHERE {where}"
                " ORDER BY (r.type = 'Patient' AND r.id = ?) DESC, r.rid LIMIT ? OFFSET ?",
                [*args, patient_id, count, offset],
            ).fetchall()
        more = offset + len(rows) < total
        return SearchPage([_row(r) for r in rows], total=total, next_offset=offset + count if more else None)

    def find_ids(self, resource_type: str, params: Mapping[str, str]) -> list[str]:
        """Ids matching simple search params (conditional references such as `identifier=system|value`)."""
        query = parse_search(resource_type, list(params.items()))
        args: list[Any] = []
        where = self._sql.where(query, args)  # no compartment: the source is the resources table
        with self._errors("find_ids"):
            rows: list[Any] = (
                self._conn()
                .execute(f"SELECT r.id FROM resources r WHERE {where} ORDER BY r.rid LIMIT 1000", args)
                .fetchall()
            )
        return [r[0] for r in rows]

    def close(self) -> None:
        """Close every connection this store opened (from any thread)."""
        self._closed = True
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with suppress(apsw.Error):
                conn.close()
        self._local = threading.local()
