"""The SQLite write path: one batch of resources and their index rows inside the caller's transaction.

Speed comes from batching: rowids are assigned in Python (the caller holds the write lock inside
BEGIN IMMEDIATE), bodies and index rows go in with one executemany per table, and a first insert writes
the body once (the history table only receives a version when it is superseded).
"""

# ruff: noqa: S608 - SQL is assembled only from fixed fragments and table names; every value is bound.

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import apsw
import orjson

from fhirgate.core.fhir.indexing import IndexRows
from fhirgate.errors import ValidationFailed
from fhirgate.store.contract import Resource, StoredResource
from fhirgate.store.sqlite.schema import INDEX_TABLES, ROW_TABLES

# FHIR R4 §2.24.0.1 id: 1-64 of [A-Za-z0-9\-\.]
_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_TYPE_RE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")

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


def _check(index: int, resource: Any) -> tuple[str, str]:
    if not isinstance(resource, dict):
        raise ValidationFailed("not a JSON object", location=f"resources[{index}]")
    rtype, rid = resource.get("resourceType"), resource.get("id")
    if not isinstance(rtype, str) or not _TYPE_RE.match(rtype):
        raise ValidationFailed("resourceType missing or malformed", location=f"resources[{index}]")
    if not isinstance(rid, str) or not _ID_RE.match(rid):
        raise ValidationFailed("id missing or malformed (1-64 of A-Z a-z 0-9 - .)", location=f"resources[{index}]")
    return rtype, rid


def _rounds(keys: list[tuple[str, str]]) -> list[range]:
    """Split a batch where a (type, id) repeats, so each round sees earlier writes of the same resource."""
    rounds: list[range] = []
    start, seen = 0, set[tuple[str, str]]()
    for i, key in enumerate(keys):
        if key in seen:
            rounds.append(range(start, i))
            start, seen = i, set[tuple[str, str]]()
        seen.add(key)
    rounds.append(range(start, len(keys)))
    return rounds


def write_batch(
    conn: apsw.Connection,
    params: ParamIds,
    resources: Sequence[Resource],
    index: Sequence[IndexRows],
    now: str,
) -> list[StoredResource]:
    """Store every resource and its index rows; the caller owns the transaction (and rolls back on error)."""
    keys = [_check(i, r) for i, r in enumerate(resources)]
    epoch = datetime.fromisoformat(now.replace("Z", "+00:00")).timestamp()
    out: list[StoredResource] = []
    for part in _rounds(keys):
        out += _write_round(conn, params, [resources[i] for i in part], [index[i] for i in part],
                            [keys[i] for i in part], now, epoch)  # fmt: skip
    return out


def _write_round(
    conn: apsw.Connection,
    params: ParamIds,
    resources: list[Resource],
    index: list[IndexRows],
    keys: list[tuple[str, str]],
    now: str,
    epoch: float,
) -> list[StoredResource]:
    lookup = "SELECT rid, version FROM resources WHERE type = ? AND id = ?"
    existing = [conn.execute(lookup, key).fetchone() for key in keys]
    top: Any = conn.execute("SELECT coalesce(max(rid), 0) + 1 FROM resources").fetchone()
    next_rid = int(top[0])
    inserts: list[tuple[Any, ...]] = []
    updates: list[tuple[Any, ...]] = []
    out: list[StoredResource] = []
    rids: list[int] = []
    for resource, (rtype, id_), found in zip(resources, keys, existing, strict=True):
        if found is None:
            rid, version = next_rid, 1
            next_rid += 1
        else:
            rid, version = int(found[0]), int(found[1]) + 1
        meta = dict(resource.get("meta") or {})
        meta["versionId"] = str(version)
        meta["lastUpdated"] = now
        body = {**resource, "meta": meta}
        text = orjson.dumps(body).decode()
        if found is None:
            inserts.append((rid, rtype, id_, version, now, epoch, text))
        else:
            updates.append((version, now, epoch, text, rid))
        rids.append(rid)
        out.append(StoredResource(rtype, id_, version, now, body))
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
    return out


def delete_index_rows(conn: apsw.Connection, rids: list[tuple[int]]) -> None:
    """Remove every index and compartment row of the given resources."""
    for table in ROW_TABLES:
        conn.executemany(f"DELETE FROM {table} WHERE rid = ?", rids)


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
