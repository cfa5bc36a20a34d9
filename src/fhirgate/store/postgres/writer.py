"""The PostgreSQL write path: one batch of resources and their index rows inside the caller's transaction.

Mirrors store/sqlite/writer.py: a batch is split into rounds where a (type, id) repeats, existing rows
are found with one query per round, superseded versions go to `history`, and new rows and every index
row go in with COPY. `patient_key` is the first patient of the resource's compartment (for a Patient,
its own id), as IndexRows.patients lists them (core.fhir.compartment.patients_of order).
"""

# ruff: noqa: S608 - SQL is assembled only from fixed fragments and table names; every value is bound.

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
import psycopg

from fhirgate.core.fhir.indexing import IndexRows
from fhirgate.errors import ValidationFailed
from fhirgate.store.batch import check_key, is_key, rounds
from fhirgate.store.contract import PreparedResource, Resource, StoredResource
from fhirgate.store.postgres.query import param_key
from fhirgate.store.postgres.schema import ROW_COLUMNS, ROW_TABLES

Conn = psycopg.Connection[tuple[Any, ...]]


def patient_key(ix: IndexRows) -> str | None:
    """The distribution key: the compartment's first patient (a Patient's own id), None for shared resources."""
    return ix.patients[0] if ix.patients else None


def write_batch(
    conn: Conn, resources: Sequence[Resource], index: Sequence[IndexRows], now: str
) -> list[StoredResource]:
    """Store every resource and its index rows; the caller owns the transaction (and rolls back on error)."""
    keys = [check_key(i, r) for i, r in enumerate(resources)]
    stamp = datetime.fromisoformat(now.replace("Z", "+00:00"))
    out: list[StoredResource] = []
    for part in rounds(keys):
        part_keys = [keys[i] for i in part]
        existing = _existing(conn, part_keys)
        new_rids = _new_rids(conn, sum(1 for e in existing if e is None))
        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        rids: list[int] = []
        for i, found in zip(part, existing, strict=True):
            rtype, id_ = keys[i]
            resource = resources[i]
            if found is None:
                rid, version = new_rids.pop(0), 1
            else:
                rid, version = found[0], found[1] + 1
            meta = dict(resource.get("meta") or {})
            meta["versionId"] = str(version)
            meta["lastUpdated"] = now
            full = {**resource, "meta": meta}
            text = orjson.dumps(full).decode()
            pkey = patient_key(index[i])
            if found is None:
                inserts.append((rid, rtype, id_, version, stamp, stamp.timestamp(), False, pkey, text))
            else:
                updates.append((version, stamp, stamp.timestamp(), pkey, text, rid))
            rids.append(rid)
            out.append(StoredResource(rtype, id_, version, now, full))
        _store_round(conn, inserts, updates)
        _write_index(conn, part_keys, rids, [index[i] for i in part])
    return out


def write_prepared(conn: Conn, items: Sequence[PreparedResource], now: str) -> int:
    """Store prepared resources (bodies serialized without `meta`, rows extracted); returns how many.

    The caller owns the transaction, as for write_batch. Stored bodies are `{"meta": {..., versionId,
    lastUpdated}, <body members>}`, built by text concatenation exactly as the SQLite writer's
    write_prepared does (the body is never parsed here); new rows and every index row go in with COPY.
    """
    keys = []
    for i, item in enumerate(items):
        rtype, name = item.resource_type, item.id
        if not is_key(rtype, name):
            raise ValidationFailed("resourceType or id missing or malformed", location=f"resources[{i}]")
        if type(item.body) is not str or not item.body.startswith("{"):
            raise ValidationFailed("body must be a JSON object", location=f"resources[{i}]")
        keys.append((rtype, name))
    stamp = datetime.fromisoformat(now.replace("Z", "+00:00"))
    epoch = stamp.timestamp()
    dumps = orjson.dumps
    plain = '{"meta":{"versionId":"1","lastUpdated":"' + now + '"}'  # version 1 without meta: the common case
    for part in rounds(keys):
        part_keys = [keys[i] for i in part]
        existing = _existing(conn, part_keys)
        new_rids = iter(_new_rids(conn, sum(1 for e in existing if e is None)))
        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        rids: list[int] = []
        index: list[IndexRows] = []
        for i, found in zip(part, existing, strict=True):
            item = items[i]
            rtype, id_ = keys[i]
            if found is None:
                rid, version = next(new_rids), 1
            else:
                rid, version = found[0], found[1] + 1
            rest = item.body[1:].lstrip()
            sep = "" if rest.startswith("}") else ","
            if version == 1 and not item.meta:
                text = plain + sep + rest
            else:
                meta = dict(item.meta) if item.meta else {}
                meta["versionId"] = str(version)
                meta["lastUpdated"] = now
                text = '{"meta":' + dumps(meta).decode() + sep + rest
            pkey = patient_key(item.index)
            if found is None:
                inserts.append((rid, rtype, id_, version, stamp, epoch, False, pkey, text))
            else:
                updates.append((version, stamp, epoch, pkey, text, rid))
            rids.append(rid)
            index.append(item.index)
        _store_round(conn, inserts, updates)
        _write_index(conn, part_keys, rids, index)
    return len(items)


def _store_round(conn: Conn, inserts: list[tuple[Any, ...]], updates: list[tuple[Any, ...]]) -> None:
    """Move superseded versions to history, update them in place, and COPY the new rows (one round)."""
    if updates:
        old = [u[-1] for u in updates]
        conn.execute(
            "INSERT INTO history(rid, version, last_updated, deleted, patient_key, body)"
            " SELECT rid, version, last_updated, deleted, patient_key, body FROM resources"
            " WHERE rid = ANY(%s::bigint[])",
            (old,),
        )
        delete_index_rows(conn, old)
        with conn.cursor() as cur:
            cur.executemany(
                "UPDATE resources SET version = %s, last_updated = %s, lue = %s, deleted = FALSE,"
                " patient_key = %s, body = %s::jsonb, txid = pg_current_xact_id() WHERE rid = %s",
                updates,
            )
    if inserts:
        _copy(
            conn,
            "resources",
            ("rid", "type", "id", "version", "last_updated", "lue", "deleted", "patient_key", "body"),
            inserts,
        )


def _existing(conn: Conn, keys: list[tuple[str, str]]) -> list[tuple[int, int] | None]:
    """(rid, version) of each (type, id) already stored, in one query."""
    found: dict[int, tuple[int, int]] = {}
    rows = conn.execute(
        "SELECT k.ord, r.rid, r.version FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS k(type, id, ord)"
        " JOIN resources r ON r.type = k.type AND r.id = k.id FOR UPDATE OF r",
        ([k[0] for k in keys], [k[1] for k in keys]),
    ).fetchall()
    for pos, rid, version in rows:
        found[int(pos) - 1] = (int(rid), int(version))
    return [found.get(i) for i in range(len(keys))]


def _new_rids(conn: Conn, n: int) -> list[int]:
    """n fresh rids from the identity sequence, ascending (so insertion order is batch order)."""
    if n == 0:
        return []
    rows = conn.execute(
        "SELECT nextval(pg_get_serial_sequence('resources', 'rid')) FROM generate_series(1, %s)", (n,)
    ).fetchall()
    return sorted(int(r[0]) for r in rows)


def _copy(conn: Conn, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """COPY rows into table (text format)."""
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def delete_index_rows(conn: Conn, rids: list[int]) -> None:
    """Remove every index and compartment row of the given resources."""
    for table in ROW_TABLES:
        conn.execute(f"DELETE FROM {table} WHERE rid = ANY(%s::bigint[])", (rids,))


def _write_index(conn: Conn, keys: list[tuple[str, str]], rids: list[int], index: list[IndexRows]) -> None:
    """COPY every index and compartment row of the round, grouped by resource in round order (rid order for new
    rows); duplicates within a resource are dropped (rows of different resources differ by rid)."""
    rows: dict[str, list[tuple[Any, ...]]] = {table: [] for table in ROW_TABLES}
    tok, ttx, sx, dt = rows["ix_token"], rows["ix_token_text"], rows["ix_string"], rows["ix_date"]
    ref, qty, num, uri = rows["ix_reference"], rows["ix_quantity"], rows["ix_number"], rows["ix_uri"]
    comp = rows["compartment"]
    for (rtype, _), rid, ix in zip(keys, rids, index, strict=True):
        k = patient_key(ix)
        p = f"{rtype}."
        if ix.token:
            tok.extend({(rid, k, p + a, b or "", c or "") for a, b, c in ix.token})
        if ix.token_text:
            ttx.extend({(rid, k, p + a, b) for a, b in ix.token_text})
        if ix.string:
            sx.extend({(rid, k, p + a, b, c) for a, b, c in ix.string})
        if ix.date:
            dt.extend({(rid, k, p + a, b, c) for a, b, c in ix.date})
        if ix.reference:
            ref.extend({(rid, k, p + a, b or "", c or "", d) for a, b, c, d in ix.reference})
        if ix.quantity:
            qty.extend({(rid, k, p + a, b, c or "", d or "") for a, b, c, d in ix.quantity})
        if ix.number:
            num.extend({(rid, k, p + a, b) for a, b in ix.number})
        if ix.uri:
            uri.extend({(rid, k, p + a, b) for a, b in ix.uri})
        if ix.patients:
            comp.extend({(rid, k, patient) for patient in ix.patients})
    for table, batch in rows.items():
        if batch:
            _copy(conn, table, ("rid", "patient_key", *ROW_COLUMNS[table]), batch)


assert param_key("A", "b") == "A.b"  # index rows name parameters as query.param_key does
