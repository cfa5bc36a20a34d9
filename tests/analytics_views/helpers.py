"""Small helpers shared by the view tests."""

from __future__ import annotations

from typing import Any

from fhirgate.store.sqlite.store import SqliteStore


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
