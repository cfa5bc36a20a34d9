"""Small helpers shared by the view tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import apsw

from fhirgate.store.sqlite.store import SqliteStore

QueryFn = Callable[[str, int], list[dict[str, Any]]]


def q(store: SqliteStore, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
    """All rows of a query on the store's connection."""
    return list(store._conn().execute(sql, args).fetchall())


def snapshot(store: SqliteStore, names: list[str]) -> dict[str, list[Any]]:
    """Every view table's rows (with _rid), sorted, for comparing two ways of building them."""
    return {n: sorted(q(store, f'SELECT * FROM "{n}"'), key=repr) for n in names}


# The sensitive label codes the derived tables leave out (issue 5 item 3, REFERENCE §5), written out here
# rather than imported, so the recomputations stay independent of fhirgate's labels module.
SENSITIVE = frozenset({"R", "V", "ETH", "PSY", "HIV", "STD", "SDV", "SEX", "BH", "GDIS", "42CFRPart2"})


def labelled_ids(store: SqliteStore, rtype: str) -> set[str]:
    """Ids of the stored resources of `rtype` whose raw meta.security carries a SENSITIVE code."""
    out: set[str] = set()
    for item in store.iter_type(rtype):
        codes = {c.get("code") for c in item.body.get("meta", {}).get("security", [])}
        if codes & SENSITIVE:
            out.add(str(item.body["id"]))
    return out


def report_query(conn: apsw.Connection) -> QueryFn:
    """A report's query function straight on a store connection (no sandbox): rows as dicts, at most max_rows."""

    def query(sql: str, max_rows: int) -> list[dict[str, Any]]:
        cur = conn.execute(sql)
        try:
            cols = [d[0] for d in cur.getdescription()]
        except apsw.ExecutionCompleteError:  # no rows
            return []
        return [dict(zip(cols, r, strict=True)) for r in cur][:max_rows]

    return query


def check_rebuild_and_reopen(
    store: SqliteStore, table: str, stored: Callable[[SqliteStore], Any], expected: Any
) -> None:
    """A derived table equals its recomputation after a full rebuild, and is rebuilt when dropped and reopened."""
    incremental = stored(store)
    store.run_write(lambda conn: store.derived.rebuild(conn))  # type: ignore[union-attr]
    assert stored(store) == incremental == expected
    store._conn().execute(f"DROP TABLE {table}")
    derived = store.derived
    assert derived is not None and derived.load(store._conn())
    store.run_write(derived.prepare)
    assert stored(store) == incremental
