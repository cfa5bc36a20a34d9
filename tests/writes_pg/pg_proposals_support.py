"""Both proposal stores behind one test handle: the store, a raw-SQL editor for tampering, and clean-up.

`edit` takes SQL with `?` placeholders (SQLite's) and rewrites them for PostgreSQL, so a tamper test is
written once. A PostgreSQL store lives in a schema `fg_test_<hex>` dropped on close.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from writes_helpers import MAC_KEY, Clock

from fhirgate.writes.approvals import ProposalStore
from fhirgate.writes.pg_approvals import PgProposalStore, open_pg_proposals
from fhirgate.writes.proposal_rules import Proposals
from pg_server import POSTGRES_URL, drop_schema, needs_postgres, scratch_schema


@dataclass
class Backend:
    """One opened proposal store, how to edit its rows behind its back, and how to throw it away."""

    name: str
    store: Proposals
    edit: Callable[..., None]
    drop: Callable[[], None]

    def close(self) -> None:
        self.store.close()
        self.drop()


def sqlite_backend(tmp_path: Path, clock: Clock) -> Backend:
    path = tmp_path / "proposals.db"

    def edit(statement: str, *params: object) -> None:
        conn = sqlite3.connect(path)
        with conn:
            conn.execute(statement, params)
        conn.close()

    return Backend("sqlite", ProposalStore(path, mac_key=MAC_KEY, clock=clock), edit, lambda: None)


def postgres_backend(tmp_path: Path, clock: Clock, schema: str | None = None) -> Backend:
    schema = schema or scratch_schema()

    def edit(statement: str, *params: object) -> None:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            conn.execute(statement.replace("?", "%s"), params)

    store = open_pg_proposals(POSTGRES_URL, schema, MAC_KEY, clock=clock)
    assert isinstance(store, PgProposalStore)
    return Backend("postgres", store, edit, lambda: drop_schema(schema))


BACKENDS = [
    pytest.param(sqlite_backend, id="sqlite"),
    pytest.param(postgres_backend, id="postgres", marks=needs_postgres),
]
