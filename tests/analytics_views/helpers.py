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
