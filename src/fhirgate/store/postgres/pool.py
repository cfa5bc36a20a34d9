"""The connection pool every PostgreSQL-backed component opens: autocommit, its schema on the search path.

The FHIR store, the audit chain and the proposal store each keep a small pool in one schema. One direct
connection is made first, so a refused or misconfigured server fails at once rather than after the pool's
retries; `first` may use that connection (e.g. to create tables) before the pool opens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import psycopg_pool
from psycopg import sql

Conn = psycopg.Connection[tuple[Any, ...]]
OPEN_ERRORS = (psycopg.Error, psycopg_pool.PoolTimeout)


def open_pool(
    url: str, schema: str, *, name: str, size: int, first: Callable[[Conn], None] | None = None
) -> psycopg_pool.ConnectionPool[Conn]:
    """An open pool of at most `size` autocommit connections on `schema`; OPEN_ERRORS when the server is not there.

    `schema` must already be validated (store.postgres.schema.SCHEMA_RE): it is quoted, never interpolated raw.
    """
    path = sql.SQL("SET search_path TO {}").format(sql.Identifier(schema))

    def configure(conn: Conn) -> None:
        conn.execute(path)

    pool: psycopg_pool.ConnectionPool[Conn] = psycopg_pool.ConnectionPool(
        url,
        min_size=1,
        max_size=max(1, size),
        kwargs={"autocommit": True},
        configure=configure,
        open=False,
        name=name,
        timeout=30.0,
    )
    try:
        with psycopg.connect(url, connect_timeout=10, autocommit=True) as conn:
            if first is not None:
                first(conn)
        pool.open(wait=True, timeout=10.0)
    except BaseException:
        pool.close()
        raise
    return pool
