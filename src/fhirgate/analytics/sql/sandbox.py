"""The SQL sandbox: read-only connections on which a caller's one SELECT sees only its permitted view rows.

Each connection opens the store file with SQLITE_OPEN_READONLY, has load_extension off, double-quoted
strings off, defensive mode on, ATTACH limited to zero databases and value sizes bounded. Per call, under
the caller's grants, it holds TEMP views named like the view tables (`appointment`), each reading a
secret-named inner temp view that selects the table's columns (not `_rid`) from `main.<table>`,
filtered by the grant's row filter (one patient, a care team, consent exclusions, withheld labels).
Then, with `PRAGMA query_only=ON` and the ViewAuthorizer installed, exactly one statement is compiled
(SQLITE_PREPARE_NO_VTAB) and run under a progress-handler deadline; rows are read up to the page bound.
The views are rebuilt only when the grants or the store's schema change, so repeated calls by similar
callers pay nothing for them.
"""


# ruff: noqa: S608 - identifiers in DDL are validated names (_NAME, _COLUMN); values are validated ids and codes.

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw
import orjson

from fhirgate.analytics.sql.authorizer import DEID_FUNCTION, RID_COLUMN, ViewAuthorizer
from fhirgate.analytics.sql.catalog import ViewInfo, builtin_views, view_from_definition
from fhirgate.analytics.sql.deid_views import DeidContext, column_specs, deid_cell, select_list, suppress_computed
from fhirgate.analytics.sql.diagnostics import Explainer
from fhirgate.analytics.sql.limits import SqlLimits
from fhirgate.analytics.sql.policy import (
    DERIVED_TYPES,
    LABEL_CODE,
    StoreFacts,
    ViewGrant,
    labelled_select,
    labelled_table,
)
from fhirgate.analytics.views import billing, rollup, summary
from fhirgate.analytics.views.summary import LEFT_OUT_LABELS
from fhirgate.database import open_sqlite
from fhirgate.errors import FhirgateError, InvalidInput, StoreError

_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
_COLUMN = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}")
_RESERVED = frozenset({"resources", "history", "params", "compartment", "store_meta", "views_meta"})
_PROGRESS_STEPS = 1000
# When equal, installed views are reused.
# (view, WHERE condition, columns, Safe Harbor column types or () when not de-identified) for each view.
Signature = tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...]


@dataclass(slots=True)
class QueryPage:
    """One page of a query's result, with what the call touched and how long its parts took."""

    columns: list[dict[str, Any]]
    rows: list[list[Any]]
    next_offset: int | None
    views: tuple[str, ...]
    setup_ms: float
    run_ms: float
    bounded: bool = False  # more rows exist past the total row bound
    suppressed: int = 0  # computed small counts shown as "<11" (de-identified callers)


@dataclass(slots=True)
class _Session:
    """One sandbox connection with its authorizer and the views currently installed on it."""

    conn: apsw.Connection
    auth: ViewAuthorizer = field(default_factory=ViewAuthorizer)
    signature: Signature | None = None
    schema_version: int = -1
    deadline: float = 0.0
    deid: DeidContext | None = None  # the current caller's, while a de-identified query runs
    labelled: dict[str, int] = field(default_factory=dict)  # labelled-rid temp table -> data_version filled at


def _quote(name: str) -> str:
    return '"' + name + '"'


def _table_name_ok(name: str) -> bool:
    return bool(_NAME.fullmatch(name)) and name not in _RESERVED and not name.startswith(("ix_", "sqlite_"))


class SqlSandbox:
    """A small pool of sandbox connections over one store file."""

    def __init__(
        self,
        path: Path,
        *,
        key: str | None = None,
        limits: SqlLimits | None = None,
        pool: int = 4,
        before_read: Callable[[], object] | None = None,
    ) -> None:
        """A sandbox over the store file at `path`; `before_read` runs first in every catalog() (every use case
        reads the catalog first), e.g. an analytics replica catching up with its source (analytics/views/replica.py).
        """
        self.path = Path(path)
        self._before_read = before_read
        self._key = key
        self.limits = limits or SqlLimits()
        self._idle: list[_Session] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(pool)
        self._catalog: tuple[int, dict[str, ViewInfo]] | None = None
        self._closed = False

    # -- connections ---------------------------------------------------------------------------------

    def _open(self) -> _Session:
        conn = open_sqlite(self.path, key=self._key, readonly=True)
        conn.enable_load_extension(False)
        conn.config(apsw.SQLITE_DBCONFIG_DQS_DML, 0)
        conn.config(apsw.SQLITE_DBCONFIG_DQS_DDL, 0)
        conn.config(apsw.SQLITE_DBCONFIG_DEFENSIVE, 1)
        conn.config(apsw.SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0)
        conn.limit(apsw.SQLITE_LIMIT_ATTACHED, 0)
        conn.limit(apsw.SQLITE_LIMIT_LENGTH, self.limits.engine_max_value_bytes)
        session = _Session(conn)
        conn.set_progress_handler(lambda: time.monotonic() > session.deadline, _PROGRESS_STEPS)

        # Innocuous: it reads nothing but its arguments; the authorizer lets only inner views call it.
        def fg_deid(*args: Any) -> Any:
            return deid_cell(session.deid, args[0], args[1]) if len(args) == 2 else None

        conn.create_scalar_function(DEID_FUNCTION, fg_deid, 2, flags=apsw.SQLITE_INNOCUOUS)
        return session

    @contextmanager
    def _session(self, signature: Signature | None = None) -> Iterator[_Session]:
        if self._closed:
            raise StoreError("the SQL sandbox is closed")
        if not self._slots.acquire(timeout=30):
            raise StoreError("the SQL sandbox is busy; try again")
        try:
            with self._lock:
                match = next((s for s in self._idle if s.signature == signature), None)
                session = match or (self._idle[-1] if self._idle else None)
                if session is not None:
                    self._idle.remove(session)
            if session is None:
                session = self._open()
            ok = False
            try:
                yield session
                ok = True
            finally:
                if ok and not self._closed:
                    with self._lock:
                        self._idle.append(session)
                else:
                    session.conn.close()
        finally:
            self._slots.release()

    def close(self) -> None:
        """Close every idle connection (busy ones close when their call ends)."""
        self._closed = True
        with self._lock:
            idle, self._idle = self._idle, []
        for session in idle:
            session.conn.close()

    # -- the catalog ---------------------------------------------------------------------------------

    def _setup_mode(self, session: _Session) -> None:
        session.deadline = math.inf  # our own statements are not timed
        session.conn.authorizer = None
        session.conn.execute("PRAGMA query_only=OFF")

    def _read_catalog(self, conn: apsw.Connection) -> dict[str, ViewInfo]:
        tables = {r[0] for r in conn.execute("SELECT name FROM main.sqlite_schema WHERE type = 'table'")}
        views = builtin_views()
        if "views_meta" in tables:
            views = {**_meta_views(conn), **views}
        out: dict[str, ViewInfo] = {}
        for name, info in sorted(views.items()):
            if name not in tables or not _table_name_ok(name):
                continue
            cols = [(str(r[1]), str(r[2] or "")) for r in conn.execute(f"PRAGMA main.table_info({_quote(name)})")]
            cols = [(c, t) for c, t in cols if c != RID_COLUMN and _COLUMN.fullmatch(c)]
            if cols:
                out[name] = info.with_table_columns(cols)
        return out

    def _refresh(self, session: _Session) -> dict[str, ViewInfo]:
        """The catalog for the store's current schema (cached by schema_version); session in setup mode."""
        version = int(str(session.conn.execute("PRAGMA main.schema_version").fetchall()[0][0]))
        cached = self._catalog
        if cached is not None and cached[0] == version:
            catalog = cached[1]
        else:
            catalog = self._read_catalog(session.conn)
            self._catalog = (version, catalog)
        if version != session.schema_version:
            session.signature = None
            session.schema_version = version
        return catalog

    def catalog(self) -> dict[str, ViewInfo]:
        """The views that exist in the store now (definitions whose tables are materialized)."""
        if self._before_read is not None:
            self._before_read()
        try:
            with self._session() as session:
                self._setup_mode(session)
                return self._refresh(session)
        except apsw.Error as exc:
            raise StoreError(f"the view database could not be read ({type(exc).__name__})") from None

    def facts(self, labels: frozenset[str] = frozenset()) -> StoreFacts:
        """What the derived tables hold now, for policy.grant_view: the patients appointment_daily and
        billing_daily leave out (None when not materialized), which derived tables are current, and which codes of
        LEFT_OUT_LABELS and `labels` (the caller's withheld labels) the types they summarize carry.

        Presence is one query: per (type, code) an EXISTS probe of the `_security` token index, so its cost
        does not grow with the number of labelled resources. Codes not shaped like label codes are not
        looked up (policy.grant_view then refuses the derived tables: fail closed).
        """
        codes = sorted(c for c in LEFT_OUT_LABELS | labels if LABEL_CODE.fullmatch(c))
        types = sorted(DERIVED_TYPES)
        try:
            with self._session() as session:
                self._setup_mode(session)
                conn = session.conn
                optouts = rollup.excluded_patients(conn)
                billing_optouts = billing.excluded_patients(conn)
                tables = (summary, rollup, billing)
                current = frozenset(table.NAME for table in tables if table.current(conn))
                sql = (
                    f"WITH c(code) AS (VALUES {', '.join('(?)' for _ in codes)}) "
                    "SELECT p.rtype, c.code FROM main.params p, c WHERE p.code = '_security' "
                    f"AND p.rtype IN ({', '.join('?' for _ in types)}) "
                    "AND EXISTS (SELECT 1 FROM main.ix_token t WHERE t.pid = p.pid AND t.code = c.code)"
                )
                found: dict[str, set[str]] = {}
                for rtype, code in conn.execute(sql, [*codes, *types]):
                    found.setdefault(str(rtype), set()).add(str(code))
                present = {t: frozenset(c) for t, c in found.items()}
                return StoreFacts(optouts, present, frozenset(codes), current, billing_optouts)
        except apsw.Error as exc:
            raise StoreError(f"the view database could not be read ({type(exc).__name__})") from None

    # -- installing the caller's views ---------------------------------------------------------------

    @staticmethod
    def signature(
        catalog: Mapping[str, ViewInfo], grants: Mapping[str, ViewGrant], deidentified: bool = False
    ) -> Signature:
        """What must be installed for these grants: each granted view, its row filter, columns and (for a
        de-identified caller) each column's Safe Harbor type."""
        out = []
        for name, grant in sorted(grants.items()):
            info = catalog.get(name)
            if info is None or not grant.allowed or grant.rows is None:
                continue
            names = info.column_names  # a computed property: read once
            keep = [i for i, c in enumerate(names) if c not in grant.hidden_columns]
            specs = column_specs(info) if deidentified else ()
            columns = tuple(names[i] for i in keep)
            out.append((name, grant.rows.where(), columns, tuple(specs[i] for i in keep) if specs else ()))
        return tuple(out)

    def _install(self, session: _Session, signature: Signature) -> None:
        conn, auth = session.conn, session.auth
        for (name,) in conn.execute("SELECT name FROM temp.sqlite_schema WHERE type = 'view'").fetchall():
            conn.execute(f"DROP VIEW IF EXISTS temp.{_quote(str(name))}")
        # A row filter listing thousands of patient ids is a long view definition: allow it while installing.
        longest = max((len(where) for _, where, _, _ in signature), default=0)
        bound = conn.limit(apsw.SQLITE_LIMIT_LENGTH, max(self.limits.engine_max_value_bytes, 2 * longest + 4096))
        try:
            for name, where, columns, specs in signature:
                cols = ", ".join(_quote(c) for c in columns)
                picked = select_list(columns, specs, _quote) if specs else cols
                cond = f" WHERE {where}" if where else ""
                inner = auth.inner_name(name)
                conn.execute(f"CREATE TEMP VIEW {_quote(inner)} AS SELECT {picked} FROM main.{_quote(name)}{cond}")
                conn.execute(f"CREATE TEMP VIEW {_quote(name)} AS SELECT {cols} FROM {_quote(inner)}")
        finally:
            conn.limit(apsw.SQLITE_LIMIT_LENGTH, bound)
        names = {
            str(r[0])
            for r in conn.execute("SELECT name FROM main.sqlite_schema UNION SELECT name FROM temp.sqlite_schema")
        }
        # A de-identified view is never "unfiltered": reading its table directly would bypass fg_deid.
        unfiltered = frozenset(name for name, where, _, specs in signature if not where and not specs)
        auth.install({name: frozenset(columns) for name, _, columns, _ in signature}, unfiltered, frozenset(names))
        session.signature = signature

    @staticmethod
    def _labelled(session: _Session, grants: Mapping[str, ViewGrant]) -> None:
        """Create or refill the temp tables of labelled resources the grants' row filters read (setup mode).

        Refilled whenever the store changed since (PRAGMA data_version), so a newly labelled resource is
        withheld from the next query on.
        """
        conn = session.conn
        version = int(str(conn.execute("PRAGMA main.data_version").fetchall()[0][0]))
        needed = {
            labelled_table(g.rows.rtype, g.rows.labels): (g.rows.rtype, g.rows.labels)
            for g in grants.values()
            if g.allowed and g.rows is not None and g.rows.labels and g.rows.rtype is not None
        }
        for name, (rtype, labels) in needed.items():
            if session.labelled.get(name) == version:
                continue
            conn.execute(f'CREATE TEMP TABLE IF NOT EXISTS "{name}"(rid INTEGER PRIMARY KEY)')
            conn.execute(f'DELETE FROM temp."{name}"')
            conn.execute(f'INSERT INTO temp."{name}"(rid) {labelled_select(rtype, labels)}')
            session.labelled[name] = version

    # -- running one statement -----------------------------------------------------------------------

    def query(
        self,
        grants: Mapping[str, ViewGrant],
        sql: str,
        *,
        offset: int = 0,
        max_rows: int | None = None,
        touched: set[str] | None = None,
        deid: DeidContext | None = None,
    ) -> QueryPage:
        """Run `sql` (one SELECT) over the views `grants` allow; return the page starting at `offset`.

        `touched`, when given, receives the views the statement read, even when it fails. With `deid` the
        views are de-identified (deid_views) and computed small counts suppressed.
        """
        limits = self.limits
        sql = limits.check_sql(sql)
        rows_wanted = limits.check_rows(limits.default_rows if max_rows is None else max_rows)
        if offset > limits.max_offset:
            raise limits.offset_exceeded()
        started = time.perf_counter()
        cached = self._catalog
        deidentified = deid is not None
        likely = self.signature(cached[1], grants, deidentified) if cached is not None else None
        with self._session(likely) as session:
            self._setup_mode(session)
            catalog = self._refresh(session)
            wanted = self.signature(catalog, grants, deidentified)
            self._labelled(session, grants)
            if session.signature != wanted:
                self._install(session, wanted)
            explainer = Explainer(catalog, grants, limits)
            session.deid = deid
            try:
                page = self._run(session, explainer, sql, offset, rows_wanted, started)
                if deidentified:
                    page.suppressed = suppress_computed(page.columns, page.rows)
                return page
            finally:
                session.deid = None
                if touched is not None:
                    touched.update(session.auth.touched)

    def _run(
        self, session: _Session, explainer: Explainer, sql: str, offset: int, max_rows: int, started: float
    ) -> QueryPage:
        conn, auth, limits = session.conn, session.auth, self.limits
        conn.execute("PRAGMA query_only=ON")
        auth.reset()
        conn.authorizer = auth
        session.deadline = time.monotonic() + limits.time_limit_ms / 1000.0
        try:
            statement = _single_statement(conn, sql)
            setup_ms = (time.perf_counter() - started) * 1000.0
            page = self._read_page(conn, statement, offset, max_rows)
        except FhirgateError:
            raise
        except apsw.ExecTraceAbort:
            raise InvalidInput("sql", "is not a read-only SELECT", "one SELECT statement") from None
        except (apsw.Error, OverflowError) as exc:
            raise explainer.explain(exc, auth.denial) from None
        finally:
            conn.authorizer = None
        run_ms = (time.perf_counter() - started) * 1000.0 - setup_ms
        columns, rows, next_offset, bounded = page
        return QueryPage(columns, rows, next_offset, tuple(sorted(auth.touched)), setup_ms, run_ms, bounded)

    def _read_page(
        self, conn: apsw.Connection, statement: str, offset: int, max_rows: int
    ) -> tuple[list[dict[str, Any]], list[list[Any]], int | None, bool]:
        limits = self.limits
        cursor = conn.cursor()
        statements = 0

        def only_select(cur: apsw.Cursor, text: str, bindings: Any) -> bool:
            # The statement about to run must be the one read-only query (not EXPLAIN, not a second one).
            nonlocal statements
            statements += 1
            return statements == 1 and bool(cur.is_readonly) and not cur.is_explain

        cursor.exec_trace = only_select
        try:
            cursor.execute(statement, prepare_flags=apsw.SQLITE_PREPARE_NO_VTAB)
            try:
                description = cursor.get_description()
            except apsw.ExecutionCompleteError:
                description = ()
            if len(description) > limits.max_columns:
                raise InvalidInput(
                    "sql", f"returns {len(description)} columns", f"at most {limits.max_columns} result columns"
                )
            names = [str(d[0]) for d in description]
            columns = [{"name": n, "type": d[1]} for n, d in zip(names, description, strict=True)]
            rows: list[list[Any]] = []
            chars, seen, next_offset = 0, 0, None
            for raw in cursor:
                seen += 1
                if seen <= offset:
                    continue
                if len(rows) == max_rows:
                    next_offset = offset + len(rows)
                    break
                row = [_cell(v, names[i], limits) for i, v in enumerate(raw)]
                size = len(orjson.dumps(row))
                if rows and chars + size > limits.max_page_chars:
                    next_offset = offset + len(rows)
                    break
                chars += size
                rows.append(row)
            if next_offset is not None and next_offset > limits.max_offset:
                return columns, rows, None, True  # the total row bound: the caller is told to aggregate
            return columns, rows, next_offset, False
        finally:
            cursor.close(True)


def _single_statement(conn: apsw.Connection, sql: str) -> str:
    """The text of the one statement in `sql`, compiled (and so authorized) but not run.

    apsw runs statements one after another; its execution tracer sees each statement's text after it
    is compiled and before it runs. Comment-only pieces compile to nothing (no VDBE) and are skipped;
    a second real statement is refused, whatever comments surround it.
    """
    found: list[str] = []
    consumed = 0

    def trace(cursor: apsw.Cursor, statement: str, bindings: Any) -> bool:
        nonlocal consumed
        if not cursor.has_vdbe:
            consumed += len(statement)
            return True
        found.append(statement)
        return False

    cursor = conn.cursor()
    cursor.exec_trace = trace
    try:
        cursor.execute(sql, prepare_flags=apsw.SQLITE_PREPARE_NO_VTAB, can_cache=False)
    except apsw.ExecTraceAbort:
        pass
    except apsw.BindingsError:
        raise InvalidInput("sql", "has parameters (?, :name)", "values written inline as SQL literals") from None
    finally:
        cursor.close(True)
    if not found:
        raise InvalidInput("sql", "has no statement (only comments or whitespace)", "one SELECT statement")
    first = found[0]
    start = sql.find(first, consumed)
    rest = sql[start + len(first) :] if start >= 0 else sql[consumed + len(first) :]
    if rest.strip():
        found.clear()
        consumed = 0
        cursor = conn.cursor()
        cursor.exec_trace = trace
        try:
            cursor.execute(rest, prepare_flags=apsw.SQLITE_PREPARE_NO_VTAB, can_cache=False)
        except apsw.ExecTraceAbort:
            pass
        except apsw.Error:
            found.append("?")
        finally:
            cursor.close(True)
        if found:
            raise InvalidInput("sql", "has more than one statement", "exactly one SELECT statement per call")
    return first


def _cell(value: Any, column: str, limits: SqlLimits) -> Any:
    """A result value as JSON: text within the cell bound, numbers, null; BLOBs as hex text."""
    if isinstance(value, bytes):
        value = "x'" + value.hex() + "'"
    if isinstance(value, str):
        if len(value) > limits.max_cell_chars:
            raise limits.cell_too_large(column, len(value))
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _meta_views(conn: apsw.Connection) -> dict[str, ViewInfo]:
    """User views recorded in `views_meta` (name and ViewDefinition JSON), when that table has them."""
    cursor = conn.execute("SELECT * FROM main.views_meta")
    try:
        names = [d[0] for d in cursor.get_description()]
    except apsw.ExecutionCompleteError:
        return {}
    if "name" not in names or "definition" not in names:
        return {}
    i_name, i_def = names.index("name"), names.index("definition")
    out: dict[str, ViewInfo] = {}
    for row in cursor:
        try:
            definition = orjson.loads(row[i_def])
        except (orjson.JSONDecodeError, TypeError):
            continue
        if isinstance(definition, dict) and row[i_name] == definition.get("name"):
            info = view_from_definition(definition, builtin=False)
            if info is not None:
                out[info.name] = info
    return out
