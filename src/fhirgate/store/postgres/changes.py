"""The PostgreSQL store's change feed: which resources changed since an earlier snapshot, for analytics replicas.

Every write sets `resources.txid` to its transaction id (store/postgres/schema.py). A reader remembers the
snapshot it last read at (`pg_current_snapshot()` as text); the rows changed since are exactly those visible
now whose txid was not visible then (`NOT pg_visible_in_snapshot(txid, old)`), found through the txid index
from the old snapshot's xmin, since every transaction below xmin had ended before it was taken. Transactions
that commit out of order are not missed, which a high-water mark on an id would (PostgreSQL docs §9.27.5,
Transaction ID and Snapshot Information Functions; §13.2.2, Repeatable Read, for the one snapshot per pull).
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Generator, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson

from fhirgate.errors import StoreError
from fhirgate.store.contract import MirrorChange
from fhirgate.store.postgres.pool import OPEN_ERRORS, open_pool
from fhirgate.store.postgres.schema import SCHEMA_RE

CHUNK = 2000
_COLUMNS = "SELECT type, id, deleted, body::text FROM resources"
_SINCE = "txid >= pg_snapshot_xmin(%(old)s::pg_snapshot) AND NOT pg_visible_in_snapshot(txid, %(old)s::pg_snapshot)"


def _change(row: Sequence[Any]) -> MirrorChange:
    rtype, id_, deleted, text = row
    return str(rtype), str(id_), None if deleted else orjson.loads(text)


class PgChangeFeed:
    """Pulls the changed resources of one store schema over one pooled connection (one pull at a time)."""

    def __init__(self, url: str, schema: str) -> None:
        """Connect to `schema` at `url` (the store's connection_args); StoreError when the server is not there."""
        if not SCHEMA_RE.match(schema):
            raise StoreError("change feed: not a store schema name")
        self._schema = schema
        self._lock = threading.Lock()
        try:
            self._pool = open_pool(url, schema, name=f"fhirgate-feed-{schema}", size=1)
        except OPEN_ERRORS:
            raise StoreError(f"cannot connect to PostgreSQL (schema {schema})") from None

    def close(self) -> None:
        """Close the connection."""
        self._pool.close()

    def unchanged_until(self, snapshot: str, types: Collection[str] | None) -> str | None:
        """The current snapshot when nothing (of `types`; None: any type) changed since `snapshot`, else None.

        One statement, so the probe and the snapshot it returns agree (a statement's snapshot, PostgreSQL docs
        §13.2.1): a reader may then take that snapshot as its position, and later probes do not rescan the rows
        of types it does not keep, however many are written.
        """
        where, args = _where(snapshot, types)
        probe = f"SELECT pg_current_snapshot()::text, EXISTS (SELECT 1 FROM resources WHERE {where})"  # noqa: S608
        with self._errors(), self._lock, self._pool.connection() as conn:
            row = conn.execute(probe, args).fetchone()
        assert row is not None
        return None if row[1] else str(row[0])

    def pull(self, snapshot: str | None, types: Collection[str] | None) -> Generator[list[MirrorChange], None, str]:
        """Yield the resources changed since `snapshot` (None: every live one) in chunks; return the new snapshot.

        Everything is read in one REPEATABLE READ transaction, so the chunks and the snapshot returned agree.
        A deleted resource comes with body None.
        """
        where, args = _where(snapshot, types)
        with self._errors(), self._lock, self._pool.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            row = conn.execute("SELECT pg_current_snapshot()::text").fetchone()
            assert row is not None
            with conn.cursor(name="fhirgate_feed") as cur:
                cur.execute(f"{_COLUMNS} WHERE {where} ORDER BY rid", args)
                while rows := cur.fetchmany(CHUNK):
                    yield [_change(r) for r in rows]
        return str(row[0])

    @staticmethod
    @contextmanager
    def _errors() -> Iterator[None]:
        """psycopg errors as a StoreError naming only the error class (no SQL, no values)."""
        try:
            yield
        except OPEN_ERRORS as exc:
            raise StoreError(f"change feed failed: {type(exc).__name__}") from None


def _where(snapshot: str | None, types: Collection[str] | None) -> tuple[str, dict[str, Any]]:
    """The condition for the rows changed since `snapshot` (None: every live row) of `types` (None: all)."""
    args: dict[str, Any] = {} if snapshot is None else {"old": snapshot}
    where = "NOT deleted" if snapshot is None else _SINCE
    if types is not None:
        where += " AND type = ANY(%(types)s)"
        args["types"] = sorted(types)
    return where, args
