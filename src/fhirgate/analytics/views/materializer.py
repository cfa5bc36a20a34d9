"""One view as a real SQLite table beside the store: DDL, indexes, and filling it from resources.

The table is named as the view, has one column per view column in order (SQLite affinity from the
column's FHIR type, SQL on FHIR v2 "Type hinting"), then the hidden `_rid INTEGER NOT NULL`: the store's
rowid (resources.rid) of the resource a row came from, so an update or delete replaces exactly that
resource's rows. Rows come from the SQL on FHIR engine's compiled path (analytics.sof.compile_view).
"""

# ruff: noqa: S608 - identifiers are validated view/column names (registry.NAME_RE, COLUMN_RE), always quoted.

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import apsw
import orjson

from fhirgate.analytics.sof import compile_view, load_view
from fhirgate.analytics.views.registry import RID_COLUMN, IndexSpec, ViewSpec, table_indexes
from fhirgate.errors import InvalidInput

log = logging.getLogger(__name__)

COLUMN_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
MAX_COLUMNS = 200

# FHIR primitive type -> SQLite column affinity; every other named type is TEXT (codes, ids, dates as ISO text).
_AFFINITY = {
    "boolean": "INTEGER",
    "integer": "INTEGER",
    "integer64": "INTEGER",
    "positiveInt": "INTEGER",
    "unsignedInt": "INTEGER",
    "decimal": "REAL",
}

# Rows are read from `resources` and written in chunks of this many resources.
FILL_CHUNK = 2000


def affinity(fhir_type: str | None, collection: bool) -> str:
    """The declared SQLite type of a view column: collections are JSON arrays (TEXT); no type = no affinity."""
    if collection:
        return "TEXT"
    if not fhir_type:
        return ""
    return _AFFINITY.get(fhir_type, "TEXT")


def quote(identifier: str) -> str:
    """A validated identifier as a quoted SQL identifier."""
    return '"' + identifier + '"'


def _cell(value: Any) -> Any:
    """A value SQLite can bind: lists/dicts as JSON text, Decimal as float, other odd objects as text."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, list | tuple | dict):
        return orjson.dumps(value, default=str).decode()
    if type(value).__name__ == "Decimal":
        return float(value)
    return str(value)


@dataclass(slots=True)
class MaterializedView:
    """A view ready to materialize: its spec, table columns, indexes and the engine's compiled row function."""

    spec: ViewSpec
    columns: list[str]
    types: list[str]
    indexes: tuple[IndexSpec, ...]
    rows_of: Callable[[dict[str, Any]], list[tuple[Any, ...]]]
    insert_sql: str
    delete_sql: str
    failures: int = 0
    last_error: str | None = None

    @property
    def name(self) -> str:
        """The view's (and table's) name."""
        return self.spec.name

    def rows(self, rid: int, resource: dict[str, Any]) -> list[tuple[Any, ...]]:
        """The table rows of one resource (with `_rid`); none when the engine fails on it (logged, counted)."""
        try:
            produced = self.rows_of(resource)
        except Exception as exc:  # a view must not block writes: the resource gets no rows, and it is logged
            self.failures += 1
            self.last_error = getattr(exc, "message", type(exc).__name__)
            log.warning("view %s: no rows for rid %d: %s", self.name, rid, type(exc).__name__)
            return []
        out = []
        for row in produced:
            if all(v is None or type(v) in (str, int, float, bool) for v in row):
                out.append((*row, rid))
            else:
                out.append((*(_cell(v) for v in row), rid))
        return out


def materialize(spec: ViewSpec) -> MaterializedView:
    """Load and compile a view for materializing; InvalidInput (or the engine's ViewDefinitionError) if it cannot be."""
    from fhirgate.core.fhir.validate import supported_types

    view = load_view(spec.definition)
    if view.resource not in supported_types():
        raise InvalidInput("resource", f"{view.resource!r} is not a resource type the store holds")
    columns = [c.name for c in view.columns]
    if not columns:
        raise InvalidInput("column", "the view has no columns")
    if len(columns) > MAX_COLUMNS:
        raise InvalidInput("column", f"{len(columns)} columns", f"at most {MAX_COLUMNS}")
    seen: set[str] = set()
    for name in columns:
        if not COLUMN_RE.match(name):
            raise InvalidInput("column", f"{name!r} is not a valid column name", "[A-Za-z][A-Za-z0-9_]{0,62}")
        if name.lower() in seen or name.lower() in (RID_COLUMN, "rowid", "oid", "_rowid_"):
            raise InvalidInput("column", f"{name!r} is repeated or reserved", "unique names, not _rid or rowid")
        seen.add(name.lower())
    types = [affinity(c.type, bool(c.collection)) for c in view.columns]
    indexes = table_indexes(spec.indexes, columns)
    for ix in indexes:
        missing = [c for c in ix if c not in columns and c != RID_COLUMN]
        if missing:
            raise InvalidInput("indexes", f"view {spec.name}: no column {missing[0]!r} to index")
    table = quote(spec.name)
    names = [*columns, RID_COLUMN]
    insert = f"INSERT INTO {table}({', '.join(map(quote, names))}) VALUES ({', '.join('?' * len(names))})"
    delete = f"DELETE FROM {table} WHERE {quote(RID_COLUMN)} = ?"
    return MaterializedView(spec, columns, types, indexes, compile_view(view), insert, delete)


def create_table(conn: apsw.Connection, view: MaterializedView) -> None:
    """(Re)create the view's empty table, without its indexes (fill first, index after: faster)."""
    table = quote(view.name)
    cols = [f"{quote(c)} {t}".rstrip() for c, t in zip(view.columns, view.types, strict=True)]
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(f"CREATE TABLE {table}({', '.join(cols)}, {quote(RID_COLUMN)} INTEGER NOT NULL)")


def index_name(view: str, columns: IndexSpec) -> str:
    """`view$col1$col2`: `$` never occurs in a view name, so index names cannot collide with tables."""
    return "$".join((view, *columns))


def create_indexes(conn: apsw.Connection, view: MaterializedView) -> None:
    """Create the view table's indexes (idempotent)."""
    for ix in view.indexes:
        cols = ", ".join(map(quote, ix))
        conn.execute(f"CREATE INDEX IF NOT EXISTS {quote(index_name(view.name, ix))} ON {quote(view.name)}({cols})")


def drop_table(conn: apsw.Connection, name: str) -> None:
    """Drop a view's table (its indexes go with it)."""
    conn.execute(f"DROP TABLE IF EXISTS {quote(name)}")


def fill(conn: apsw.Connection, resource_type: str, views: Sequence[MaterializedView]) -> int:
    """Insert the rows of every current resource of one type into the (empty) tables of `views`.

    Each body is parsed once for all views over its type; returns the rows inserted.
    """
    loads = orjson.loads
    last, total = 0, 0
    while True:
        chunk: list[Any] = conn.execute(
            "SELECT rid, body FROM resources WHERE type = ? AND deleted = 0 AND rid > ? ORDER BY rid LIMIT ?",
            (resource_type, last, FILL_CHUNK),
        ).fetchall()
        if not chunk:
            return total
        parsed = [(rid, loads(body)) for rid, body in chunk]
        for view in views:
            rows = [row for rid, resource in parsed for row in view.rows(rid, resource)]
            if rows:
                conn.executemany(view.insert_sql, rows)
                total += len(rows)
        last = chunk[-1][0]


def rebuild(conn: apsw.Connection, resource_type: str, views: Sequence[MaterializedView]) -> int:
    """Drop, recreate, fill and index the tables of `views` (all over `resource_type`); returns rows inserted."""
    for view in views:
        create_table(conn, view)
    total = fill(conn, resource_type, views)
    for view in views:
        create_indexes(conn, view)
    return total


def apply(conn: apsw.Connection, view: MaterializedView, changes: Iterable[tuple[int, dict[str, Any] | None]]) -> None:
    """Replace the rows of the changed resources (rowid, body or None when deleted) in the view's table."""
    changed = list(changes)
    conn.executemany(view.delete_sql, [(rid,) for rid, _ in changed])
    rows = [row for rid, body in changed if body is not None for row in view.rows(rid, body)]
    if rows:
        conn.executemany(view.insert_sql, rows)
