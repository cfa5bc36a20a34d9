"""The SQLite write path: one batch of resources and their index rows inside the caller's transaction.

Speed comes from batching: rowids are assigned in Python (the caller holds the write lock inside
BEGIN IMMEDIATE), bodies and index rows go in with one executemany per table, and a first insert writes
the body once (the history table only receives a version when it is superseded).
"""

# ruff: noqa: S608 - SQL is assembled only from fixed fragments and table names; every value is bound.

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import apsw
import orjson

from fhirgate.core.fhir.indexing import IndexRows
from fhirgate.errors import StoreError, ValidationFailed
from fhirgate.store.batch import check_key, is_key, rounds
from fhirgate.store.contract import PreparedResource, Resource, ResourceChange, StoredResource
from fhirgate.store.sqlite.schema import INDEX_TABLES, ROW_TABLES

_INSERT = {
    "ix_token": "INSERT OR IGNORE INTO ix_token(rid, pid, system, code) VALUES (?, ?, ?, ?)",
    "ix_token_text": "INSERT OR IGNORE INTO ix_token_text(rid, pid, text) VALUES (?, ?, ?)",
    "ix_string": "INSERT OR IGNORE INTO ix_string(rid, pid, norm, exact) VALUES (?, ?, ?, ?)",
    "ix_date": "INSERT OR IGNORE INTO ix_date(rid, pid, low, high) VALUES (?, ?, ?, ?)",
    "ix_reference": "INSERT OR IGNORE INTO ix_reference(rid, pid, ttype, tid, raw) VALUES (?, ?, ?, ?, ?)",
    "ix_quantity": "INSERT OR IGNORE INTO ix_quantity(rid, pid, value, system, code) VALUES (?, ?, ?, ?, ?)",
    "ix_number": "INSERT OR IGNORE INTO ix_number(rid, pid, value) VALUES (?, ?, ?)",
    "ix_uri": "INSERT OR IGNORE INTO ix_uri(rid, pid, uri) VALUES (?, ?, ?)",
    "compartment": "INSERT OR IGNORE INTO compartment(rid, patient) VALUES (?, ?)",
}


@dataclass(slots=True)
class ChangeLog:
    """The resources of watched types written in one transaction, for DerivedTables.apply.

    Only watched types are logged, so a body a loader handed over as text is parsed only when some
    derived table needs it.
    """

    watch: frozenset[str]
    items: list[ResourceChange] = field(default_factory=list)

    def add_texts(self, rids: Sequence[int], types: Sequence[str], texts: Sequence[str]) -> None:
        """Log stored JSON texts (parsed here, for watched types only)."""
        loads, watch, items = orjson.loads, self.watch, self.items
        for rid, rtype, text in zip(rids, types, texts, strict=True):
            if rtype in watch:
                items.append((rid, rtype, loads(text)))


class ParamIds:
    """The small (resource type, param code) -> integer id table, cached in memory per store."""

    def __init__(self) -> None:
        self._ids: dict[str, dict[str, int]] = {}
        self._loaded = False

    def load(self, conn: apsw.Connection) -> None:
        """(Re)read the table; called after a rollback may have discarded ids handed out."""
        self._ids = {}
        for pid, rtype, code in conn.execute("SELECT pid, rtype, code FROM params"):
            self._ids.setdefault(rtype, {})[code] = pid
        self._loaded = True

    def lookup(self, conn: apsw.Connection, rtype: str, code: str) -> int:
        """The id, or -1 when no resource was ever indexed under it (matches nothing)."""
        if not self._loaded:
            self.load(conn)
        found = self._ids.get(rtype, {}).get(code)
        if found is None:
            row = conn.execute("SELECT pid FROM params WHERE rtype = ? AND code = ?", (rtype, code)).fetchone()
            if row is None:
                return -1
            found = int(row[0])
            self._ids.setdefault(rtype, {})[code] = found
        return found

    def register_all(self, conn: apsw.Connection, codes: Mapping[str, Iterable[str]]) -> dict[str, dict[str, int]]:
        """Give every (type, code) an id now (inside the caller's transaction); returns the whole table.

        Lets worker processes build final index rows before the write. An id with no rows matches
        nothing, exactly as an unknown parameter does.
        """
        conn.executemany(
            "INSERT OR IGNORE INTO params(rtype, code) VALUES (?, ?)",
            [(rtype, code) for rtype, cs in codes.items() for code in cs],
        )
        self.load(conn)
        return {rtype: dict(ids) for rtype, ids in self._ids.items()}

    def for_type(self, conn: apsw.Connection, rtype: str) -> _TypeIds:
        """An assigner of ids for one resource type, inserting new params inside the current transaction."""
        if not self._loaded:
            self.load(conn)
        return _TypeIds(conn, rtype, self._ids.setdefault(rtype, {}))


class _TypeIds(dict[str, int]):
    def __init__(self, conn: apsw.Connection, rtype: str, known: dict[str, int]) -> None:
        super().__init__(known)
        self._conn = conn
        self._rtype = rtype
        self._known = known

    def __missing__(self, code: str) -> int:
        self._conn.execute("INSERT INTO params(rtype, code) VALUES (?, ?)", (self._rtype, code))
        pid = int(self._conn.last_insert_rowid())
        self._known[code] = pid
        self[code] = pid
        return pid


def write_batch(
    conn: apsw.Connection,
    params: ParamIds,
    resources: Sequence[Resource],
    index: Sequence[IndexRows],
    now: str,
    changes: ChangeLog | None = None,
) -> list[StoredResource]:
    """Store every resource and its index rows; the caller owns the transaction (and rolls back on error).

    With `changes`, the stored bodies of watched types are logged there.
    """
    keys = [check_key(i, r) for i, r in enumerate(resources)]
    epoch = datetime.fromisoformat(now.replace("Z", "+00:00")).timestamp()
    out: list[StoredResource] = []
    for part in rounds(keys):
        bodies: list[dict[str, Any]] = []

        def body(i: int, version: int, part: range = part, bodies: list[dict[str, Any]] = bodies) -> str:
            resource = resources[part[i]]
            meta = dict(resource.get("meta") or {})
            meta["versionId"] = str(version)
            meta["lastUpdated"] = now
            full = {**resource, "meta": meta}
            bodies.append(full)
            return orjson.dumps(full).decode()

        part_keys = [keys[i] for i in part]
        rids, versions = _write_round(conn, params, part_keys, body, [index[i] for i in part], now, epoch)
        if changes is not None:
            watch = changes.watch
            changes.items += [(r, t, b) for r, (t, _), b in zip(rids, part_keys, bodies, strict=True) if t in watch]
        out += [StoredResource(t, i, v, now, b) for (t, i), v, b in zip(part_keys, versions, bodies, strict=True)]
    return out


def write_prepared(
    conn: apsw.Connection,
    params: ParamIds,
    items: Sequence[PreparedResource],
    now: str,
    changes: ChangeLog | None = None,
) -> int:
    """Store prepared resources (bodies already serialized, rows already extracted); returns how many.

    The caller owns the transaction, as for write_batch; `changes` as there.
    """
    keys = []
    for i, item in enumerate(items):
        rtype, rid = item.resource_type, item.id
        if not is_key(rtype, rid):
            raise ValidationFailed("resourceType or id missing or malformed", location=f"resources[{i}]")
        if not item.body.startswith("{"):
            raise ValidationFailed("body must be a JSON object", location=f"resources[{i}]")
        keys.append((rtype, rid))
    epoch = datetime.fromisoformat(now.replace("Z", "+00:00")).timestamp()
    dumps = orjson.dumps
    for part in rounds(keys):
        texts: list[str] = []

        def body(i: int, version: int, part: range = part, texts: list[str] = texts) -> str:
            item = items[part[i]]
            meta = dict(item.meta) if item.meta else {}
            meta["versionId"] = str(version)
            meta["lastUpdated"] = now
            rest = item.body[1:].lstrip()
            sep = "" if rest.startswith("}") else ","
            text = '{"meta":' + dumps(meta).decode() + sep + rest
            texts.append(text)
            return text

        part_keys = [keys[i] for i in part]
        rids, _ = _write_round(conn, params, part_keys, body, [items[i].index for i in part], now, epoch)
        if changes is not None:
            changes.add_texts(rids, [t for t, _ in part_keys], texts)
    return len(items)


def _existing(conn: apsw.Connection, keys: list[tuple[str, str]]) -> list[tuple[int, int] | None]:
    """(rid, version) of each (type, id) already stored, in one query (not one lookup per resource)."""
    found: dict[int, tuple[int, int]] = {}
    for pos, rid, version in conn.execute(
        "SELECT j.key, r.rid, r.version FROM json_each(?) j"
        " JOIN resources r ON r.type = j.value ->> 0 AND r.id = j.value ->> 1",
        (orjson.dumps(keys).decode(),),
    ):
        found[int(pos)] = (int(rid), int(version))
    return [found.get(i) for i in range(len(keys))]


def _write_round(
    conn: apsw.Connection,
    params: ParamIds,
    keys: list[tuple[str, str]],
    make_body: Callable[[int, int], str],
    index: list[IndexRows],
    now: str,
    epoch: float,
) -> tuple[list[int], list[int]]:
    """Insert or update one round (no repeated key); returns the rowid and the version written for each key."""
    existing = _existing(conn, keys)
    top: Any = conn.execute("SELECT coalesce(max(rid), 0) + 1 FROM resources").fetchone()
    next_rid = int(top[0])
    inserts: list[tuple[Any, ...]] = []
    updates: list[tuple[Any, ...]] = []
    rids: list[int] = []
    versions: list[int] = []
    for i, ((rtype, id_), found) in enumerate(zip(keys, existing, strict=True)):
        if found is None:
            rid, version = next_rid, 1
            next_rid += 1
            inserts.append((rid, rtype, id_, version, now, epoch, make_body(i, version)))
        else:
            rid, version = found[0], found[1] + 1
            updates.append((version, now, epoch, make_body(i, version), rid))
        rids.append(rid)
        versions.append(version)
    if updates:
        old = [(u[4],) for u in updates]
        conn.executemany(
            "INSERT INTO history(rid, version, lu, deleted, body)"
            " SELECT rid, version, lu, deleted, body FROM resources WHERE rid = ?",
            old,
        )
        delete_index_rows(conn, old)
        conn.executemany(
            "UPDATE resources SET version = ?, lu = ?, lue = ?, deleted = 0, body = ? WHERE rid = ?", updates
        )
    if inserts:
        conn.executemany(
            "INSERT INTO resources(rid, type, id, version, lu, lue, body) VALUES (?, ?, ?, ?, ?, ?, ?)", inserts
        )
    _write_index(conn, params, keys, rids, index)
    return rids, versions


# Rows for write_rows: table -> rows in that table's column order (rid and param id first).
TableRows = dict[str, list[tuple[Any, ...]]]


def table_rows(rid: int, pids: Mapping[str, int], ix: IndexRows, out: TableRows) -> None:
    """Append one resource's index rows in final table layout (the worker side of write_rows).

    Raises KeyError for a param code without an id (the caller then leaves the write to write_prepared).
    """
    if ix.token:
        out.setdefault("ix_token", []).extend([(rid, pids[a], b or "", c or "") for a, b, c in ix.token])
    if ix.token_text:
        out.setdefault("ix_token_text", []).extend([(rid, pids[a], b) for a, b in ix.token_text])
    if ix.string:
        out.setdefault("ix_string", []).extend([(rid, pids[a], b, c) for a, b, c in ix.string])
    if ix.date:
        out.setdefault("ix_date", []).extend([(rid, pids[a], b, c) for a, b, c in ix.date])
    if ix.reference:
        out.setdefault("ix_reference", []).extend([(rid, pids[a], b or "", c or "", d) for a, b, c, d in ix.reference])
    if ix.quantity:
        out.setdefault("ix_quantity", []).extend([(rid, pids[a], b, c or "", d or "") for a, b, c, d in ix.quantity])
    if ix.number:
        out.setdefault("ix_number", []).extend([(rid, pids[a], b) for a, b in ix.number])
    if ix.uri:
        out.setdefault("ix_uri", []).extend([(rid, pids[a], b) for a, b in ix.uri])
    if ix.patients:
        out.setdefault("compartment", []).extend([(rid, patient) for patient in ix.patients])


def write_rows(
    conn: apsw.Connection,
    resources: Sequence[tuple[int, str, str, dict[str, Any] | None, str]],
    tables: Mapping[str, Sequence[Sequence[Any]]],
    now: str,
    changes: ChangeLog | None = None,
) -> int:
    """Insert NEW resources whose rowids and index rows a worker already built; returns how many.

    `resources` holds (rid, type, id, meta, body without meta) as for PreparedResource. Nothing is
    mapped per row here: each table's rows go to one executemany as they are. Raises StoreError, and
    the caller's transaction rolls back, when a (type, id) is already stored or a rowid is taken;
    the caller then writes the resources through write_prepared instead.
    """
    if not set(tables) <= set(_INSERT):
        raise StoreError("prepared rows name an unknown table")
    keys = [(rtype, rid_) for _, rtype, rid_, _, _ in resources]
    if len(set(keys)) != len(keys) or any(found is not None for found in _existing(conn, keys)):
        raise StoreError("prepared rows: a resource is already stored (an update needs write_prepared)")
    rids = [r[0] for r in resources]
    taken = conn.execute(
        "SELECT count(*) FROM resources WHERE rid IN (SELECT value FROM json_each(?))", (orjson.dumps(rids).decode(),)
    ).fetchone()
    if taken is None or int(taken[0]) or len(set(rids)) != len(rids):
        raise StoreError("prepared rows: a rowid is already taken")
    epoch = datetime.fromisoformat(now.replace("Z", "+00:00")).timestamp()
    head = '{"meta":'
    tail = ',"versionId":"1","lastUpdated":"' + now + '"}'
    dumps = orjson.dumps
    inserts = []
    for rid, rtype, id_, meta, body in resources:
        if not is_key(rtype, id_):
            raise ValidationFailed("resourceType or id missing or malformed", location=f"rid {rid}")
        if not body.startswith("{"):
            raise ValidationFailed("body must be a JSON object", location=f"rid {rid}")
        m = dumps({k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}).decode() if meta else "{}"
        rest = body[1:]
        text = head + m[:-1] + ("" if m == "{}" else ",") + tail[1:] + ("" if rest.startswith("}") else ",") + rest
        inserts.append((rid, rtype, id_, 1, now, epoch, text))
    conn.executemany(
        "INSERT INTO resources(rid, type, id, version, lu, lue, body) VALUES (?, ?, ?, ?, ?, ?, ?)", inserts
    )
    if changes is not None:
        changes.add_texts([r[0] for r in inserts], [r[1] for r in inserts], [r[6] for r in inserts])
    for table, rows in tables.items():
        if rows:
            conn.executemany(_INSERT[table], rows)
    return len(inserts)


def delete_index_rows(conn: apsw.Connection, rids: list[tuple[int]]) -> None:
    """Remove every index and compartment row of the given resources."""
    for table in ROW_TABLES:
        conn.executemany(f"DELETE FROM {table} WHERE rid = ?", rids)


def tombstone(conn: apsw.Connection, rid: int, resource_type: str, id: str, version: int, now: str) -> None:
    """Delete a resource as version `version`: its current version to history, index rows gone, a deletion marker.

    FHIR R4 §3.1.0.7 (delete): the history keeps every version; a read afterwards finds the resource gone.
    """
    epoch = datetime.fromisoformat(now.replace("Z", "+00:00")).timestamp()
    conn.execute(
        "INSERT INTO history(rid, version, lu, deleted, body) SELECT rid, version, lu, deleted, body FROM resources"
        " WHERE rid = ?",
        (rid,),
    )
    delete_index_rows(conn, [(rid,)])
    tomb = {"resourceType": resource_type, "id": id, "meta": {"versionId": str(version), "lastUpdated": now}}
    conn.execute(
        "UPDATE resources SET version = ?, lu = ?, lue = ?, deleted = 1, body = ? WHERE rid = ?",
        (version, now, epoch, orjson.dumps(tomb).decode(), rid),
    )


def _write_index(
    conn: apsw.Connection,
    params: ParamIds,
    keys: list[tuple[str, str]],
    rids: list[int],
    index: list[IndexRows],
) -> None:
    rows: dict[str, list[tuple[Any, ...]]] = {table: [] for table in _INSERT}
    tok, ttx, sx, dt = rows["ix_token"], rows["ix_token_text"], rows["ix_string"], rows["ix_date"]
    ref, qty, num, uri = rows["ix_reference"], rows["ix_quantity"], rows["ix_number"], rows["ix_uri"]
    comp = rows["compartment"]
    by_type: dict[str, dict[str, int]] = {}
    for (rtype, _), rid, ix in zip(keys, rids, index, strict=True):
        p = by_type.get(rtype)
        if p is None:
            p = by_type[rtype] = params.for_type(conn, rtype)
        tok += [(rid, p[a], b or "", c or "") for a, b, c in ix.token]
        ttx += [(rid, p[a], b) for a, b in ix.token_text]
        sx += [(rid, p[a], b, c) for a, b, c in ix.string]
        dt += [(rid, p[a], b, c) for a, b, c in ix.date]
        ref += [(rid, p[a], b or "", c or "", d) for a, b, c, d in ix.reference]
        qty += [(rid, p[a], b, c or "", d or "") for a, b, c, d in ix.quantity]
        num += [(rid, p[a], b) for a, b in ix.number]
        uri += [(rid, p[a], b) for a, b in ix.uri]
        comp += [(rid, patient) for patient in ix.patients]
    for table, batch in rows.items():
        if batch:
            conn.executemany(_INSERT[table], batch)


assert set(INDEX_TABLES.values()) | {"compartment"} == set(_INSERT)
