"""PracticeViews: the materialized views as the store's DerivedTables, kept current on every write.

The store hands `apply` the resources of watched types written in each transaction; their old rows go
(by `_rid`) and their new rows come in, inside the same transaction, so views are atomic with the data.
`views_meta` records each view's definition and a hash: a built-in whose definition (or indexes, or the
table layout) changed since the table was built is rebuilt when the store opens. Another process adding a
view changes the database schema, which every write notices (PRAGMA schema_version) and re-reads.
The derived tables (summary.patient_activity, rollup.appointment_daily, billing.billing_daily) leave out
resources carrying a sensitive security label, read from the store's `_security` index: the store writes
a resource's index rows before it calls `apply` (SqliteStore.write/write_prepared/write_rows), so a write
that adds or removes a label recomputes the resource's patient and day with its new labels. A derived
table of an older version (its versioned index missing) is rebuilt when the store opens.
"""

# ruff: noqa: S608 - identifiers are validated view names, always quoted (materializer.quote).

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import apsw
import orjson

from fhirgate.analytics.views import billing, derived, rollup, summary
from fhirgate.analytics.views import materializer as mz
from fhirgate.analytics.views.registry import ViewSpec, builtin_views
from fhirgate.core.fhir.dates import now_instant
from fhirgate.errors import FhirgateError, InvalidInput
from fhirgate.store.contract import ResourceChange

_META = """
CREATE TABLE IF NOT EXISTS views_meta(
    name TEXT PRIMARY KEY,
    resource TEXT NOT NULL,
    builtin INTEGER NOT NULL,
    definition TEXT NOT NULL,
    hash TEXT NOT NULL,
    built TEXT NOT NULL
) WITHOUT ROWID
"""


@dataclass(frozen=True, slots=True)
class ViewInfo:
    """One view as `views list` shows it."""

    name: str
    resource: str
    builtin: bool
    columns: list[str]
    rows: int
    built: str
    problem: str | None = None


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause cyclic GC: parsed bodies are many small objects, and GC passes over them cost ~40% of parsing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _schema_version(conn: apsw.Connection) -> int:
    row: Any = conn.execute("PRAGMA schema_version").fetchone()
    return int(row[0])


def _tables(conn: apsw.Connection) -> dict[str, str]:
    return {name: kind for kind, name in conn.execute("SELECT type, name FROM sqlite_schema")}


class PracticeViews:
    """The built-in practice views and user-added views, materialized beside the store (a DerivedTables)."""

    def __init__(self, builtins: Sequence[ViewSpec] | None = None) -> None:
        """Use the shipped built-in views unless `builtins` is given (tests)."""
        self._builtins = tuple(builtin_views() if builtins is None else builtins)
        self._compiled: dict[str, mz.MaterializedView] = {}  # by digest: reloading never recompiles
        self._views: dict[str, mz.MaterializedView] = {}
        self._by_type: dict[str, list[mz.MaterializedView]] = {}
        self._broken: dict[str, str] = {}
        self._stale: list[str] = []
        self._obsolete: list[str] = []
        self._summary_stale = False
        self._rollup_stale = False
        self._billing_stale = False
        self._version = -1

    # -- registry --------------------------------------------------------------------------------

    def _compile(self, spec: ViewSpec) -> mz.MaterializedView:
        digest = spec.digest
        view = self._compiled.get(digest)
        if view is None:
            view = self._compiled[digest] = mz.materialize(spec)
        return view

    def _index(self) -> None:
        by_type: dict[str, list[mz.MaterializedView]] = defaultdict(list)
        for view in self._views.values():
            by_type[view.spec.resource].append(view)
        self._by_type = dict(by_type)

    def load(self, conn: apsw.Connection) -> bool:
        """Read views_meta and the schema; True when a table is missing, stale, or obsolete."""
        tables = _tables(conn)
        meta: dict[str, tuple[str, bool, str]] = {}
        if "views_meta" in tables:
            for name, builtin, definition, digest in conn.execute(
                "SELECT name, builtin, definition, hash FROM views_meta"
            ):
                meta[name] = (digest, bool(builtin), definition)
        views: dict[str, mz.MaterializedView] = {}
        stale: list[str] = []
        self._broken = {}
        for spec in self._builtins:
            views[spec.name] = self._compile(spec)
            if meta.get(spec.name, ("", True, ""))[0] != spec.digest or tables.get(spec.name) != "table":
                stale.append(spec.name)
        builtin = {spec.name for spec in self._builtins}
        self._obsolete = [n for n, (_, b, _) in meta.items() if b and n not in builtin]
        for name, (_, is_builtin, definition) in meta.items():
            if is_builtin or name in builtin:
                continue
            try:
                views[name] = self._compile(ViewSpec(name, orjson.loads(definition), False))
            except (FhirgateError, ValueError) as exc:
                # Kept in views_meta and listed, but not maintained until fixed (views add/rebuild).
                self._broken[name] = exc.message if isinstance(exc, FhirgateError) else "definition is not JSON"
                continue
            if tables.get(name) != "table":
                stale.append(name)
        self._views, self._stale = views, stale
        self._index()
        self._version = _schema_version(conn)
        self._summary_stale = self._summarized() and not summary.current(conn)
        self._rollup_stale = self._rolled_up() and not rollup.current(conn)
        self._billing_stale = self._billed() and not billing.current(conn)
        derived_stale = self._summary_stale or self._rollup_stale or self._billing_stale
        return bool(stale or self._obsolete or derived_stale or "views_meta" not in tables)

    def _summarized(self) -> bool:
        """Whether the patient_activity summary is kept (every view it reads is maintained)."""
        return summary.has_sources(self._views)

    def _rolled_up(self) -> bool:
        """Whether the appointment_daily rollup is kept (the appointment view is maintained)."""
        return rollup.has_sources(self._views)

    def _billed(self) -> bool:
        """Whether the billing_daily rollup is kept (the claim_line and invoice_line views are maintained)."""
        return billing.has_sources(self._views)

    def prepare(self, conn: apsw.Connection) -> None:
        """Create views_meta, build missing or stale tables, drop built-ins that no longer ship."""
        conn.execute(_META)
        for name in self._obsolete:
            mz.drop_table(conn, name)
            conn.execute("DELETE FROM views_meta WHERE name = ?", (name,))
        self._obsolete = []
        if self._stale:
            self.rebuild(conn, self._stale)
        else:
            if self._summary_stale:
                summary.rebuild(conn)
            if self._rollup_stale:
                rollup.rebuild(conn)
            if self._billing_stale:
                billing.rebuild(conn)
        self._stale, self._summary_stale, self._rollup_stale, self._billing_stale = [], False, False, False
        self._version = _schema_version(conn)

    # -- maintenance (DerivedTables) ----------------------------------------------------------------

    def watched(self, conn: apsw.Connection) -> frozenset[str]:
        """Types with views; re-reads the registry when the schema changed (e.g. another process added a view)."""
        if _schema_version(conn) != self._version and self.load(conn):
            self.prepare(conn)  # inside the caller's write transaction
        return frozenset(self._by_type)

    def apply(self, conn: apsw.Connection, changes: Sequence[ResourceChange]) -> None:
        """Replace the rows of every changed resource in the views over its type (last change of a rowid wins)."""
        latest: dict[int, tuple[str, dict[str, Any] | None]] = {}
        for rid, rtype, body in changes:
            latest[rid] = (rtype, body)
        by_type: dict[str, list[tuple[int, dict[str, Any] | None]]] = defaultdict(list)
        for rid, (rtype, body) in latest.items():
            by_type[rtype].append((rid, body))
        # Stale derived tables are rebuilt on prepare, not refreshed here.
        summarized = self._summarized() and not self._summary_stale
        rolled = self._rolled_up() and not self._rollup_stale
        billed = self._billed() and not self._billing_stale
        rids: dict[str, list[int]] = defaultdict(list)
        for rtype, items in by_type.items():
            for view in self._by_type.get(rtype, ()):
                rolls = rolled and (view.name in rollup.SOURCES or view.name == derived.CONSENT)
                bills = billed and (view.name in billing.SOURCES or view.name == derived.CONSENT)
                if (summarized and view.name in summary.SOURCES) or rolls or bills:
                    rids[view.name] += [rid for rid, _ in items]
        # The patients and days of the rows about to be replaced, then of their new rows.
        touched = summary.patients_of(conn, rids) if summarized else set()
        days = rollup.days_of(conn, rids) if rolled else set()
        consenting = rollup.consent_patients(conn, rids) if rolled or billed else set()
        billed_days = billing.days_of(conn, rids) if billed else set()
        for rtype, items in by_type.items():
            for view in self._by_type.get(rtype, ()):
                mz.apply(conn, view, items)
        if summarized and rids:
            summary.refresh(conn, touched | summary.patients_of(conn, rids))
        if (rolled or billed) and rids.get(derived.CONSENT):
            # A Consent written or removed may opt its patient in or out: their appointments' and lines' days too.
            consenting |= rollup.consent_patients(conn, rids)
        if rolled and (rids.get("appointment") or rids.get(derived.CONSENT)):
            rollup.refresh(conn, days | rollup.days_of(conn, rids) | rollup.days_of_patients(conn, consenting))
        if billed and any(rids.get(v) for v in (*billing.SOURCES, derived.CONSENT)):
            now = billing.days_of(conn, rids) | billing.days_of_patients(conn, consenting)
            billing.refresh(conn, billed_days | now)

    def rebuild(self, conn: apsw.Connection, names: Iterable[str] | None = None) -> dict[str, int]:
        """Rebuild the named views (default: all) from the current resources; returns rows per view."""
        chosen = list(self._views) if names is None else list(dict.fromkeys(names))
        unknown = [n for n in chosen if n not in self._views]
        if unknown:
            raise InvalidInput("name", f"no view {unknown[0]!r}", ", ".join(sorted(self._views)))
        conn.execute(_META)
        by_type: dict[str, list[mz.MaterializedView]] = defaultdict(list)
        for name in chosen:
            by_type[self._views[name].spec.resource].append(self._views[name])
        built = now_instant()
        counts: dict[str, int] = {}
        for rtype, views in by_type.items():
            with _gc_paused():
                mz.rebuild(conn, rtype, views)
            for view in views:
                spec = view.spec
                conn.execute(
                    "INSERT OR REPLACE INTO views_meta(name, resource, builtin, definition, hash, built)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (spec.name, spec.resource, int(spec.builtin), spec.text, spec.digest, built),
                )
                counts[spec.name] = self._count(conn, spec.name)
        # Derived tables are not views: not counted.
        if self._summarized() and (any(n in summary.SOURCES for n in chosen) or not summary.current(conn)):
            summary.rebuild(conn)
        rolled_from = (*rollup.SOURCES, derived.CONSENT)
        if self._rolled_up() and (any(n in rolled_from for n in chosen) or not rollup.current(conn)):
            rollup.rebuild(conn)
        billed_from = (*billing.SOURCES, derived.CONSENT)
        if self._billed() and (any(n in billed_from for n in chosen) or not billing.current(conn)):
            billing.rebuild(conn)
        self._version = _schema_version(conn)
        return counts

    # -- administration --------------------------------------------------------------------------

    def add(self, conn: apsw.Connection, spec: ViewSpec) -> int:
        """Add (or replace) a user view and build it from the current store at once; returns its rows.

        Inside the caller's write transaction. InvalidInput when the name is built in or taken by
        another table or index; the engine's ViewDefinitionError when the definition is not valid.
        """
        if spec.builtin or spec.name in {b.name for b in self._builtins}:
            raise InvalidInput("name", f"{spec.name!r} is a built-in view", "a name no built-in view uses")
        self.watched(conn)  # current registry (another process may have added views)
        taken = _tables(conn).get(spec.name)
        if taken is not None and (spec.name not in self._views and spec.name not in self._broken):
            raise InvalidInput("name", f"a {taken} named {spec.name!r} already exists in the store", "another name")
        view = self._compile(spec)
        try:  # the engine may defer expression errors to evaluation: probe before building
            view.rows_of({"resourceType": spec.resource, "id": "probe"})
        except FhirgateError as exc:
            raise InvalidInput("definition", f"the view cannot be evaluated: {exc.message}") from None
        before = view.failures
        previous = self._views.get(spec.name)
        self._views[spec.name] = view
        self._index()
        try:
            rows = self.rebuild(conn, [spec.name])[spec.name]
            if view.failures > before:
                # the caller's transaction rolls back: no half-built view
                raise InvalidInput(
                    "definition", f"the view fails on {view.failures - before} stored resources: {view.last_error}"
                )
        except BaseException:
            if previous is None:
                self._views.pop(spec.name, None)
            else:
                self._views[spec.name] = previous
            self._index()
            raise
        self._broken.pop(spec.name, None)
        return rows

    def names(self) -> list[str]:
        """Names of the maintained views."""
        return sorted(self._views)

    def view(self, name: str) -> mz.MaterializedView:
        """One maintained view; InvalidInput when there is none of that name."""
        found = self._views.get(name)
        if found is None:
            raise InvalidInput("name", f"no view {name!r}", ", ".join(sorted(self._views)))
        return found

    def describe(self, conn: apsw.Connection) -> list[ViewInfo]:
        """Every view (broken user views included, with the problem) with its row count and build time."""
        built: dict[str, str] = {str(n): str(b) for n, b in conn.execute("SELECT name, built FROM views_meta")}
        out = [
            ViewInfo(v.name, v.spec.resource, v.spec.builtin, list(v.columns), self._count(conn, v.name), built[v.name])
            for v in self._views.values()
            if v.name in built
        ]
        for name, problem in self._broken.items():
            out.append(ViewInfo(name, "", False, [], 0, built.get(name, ""), problem))
        return sorted(out, key=lambda i: (not i.builtin, i.name))

    @staticmethod
    def _count(conn: apsw.Connection, name: str) -> int:
        row: Any = conn.execute(f"SELECT count(*) FROM {mz.quote(name)}").fetchone()
        return int(row[0])
