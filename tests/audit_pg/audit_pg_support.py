"""PostgreSQL for the audit-chain tests: server URL, a log in a throw-away schema, tampering as an attacker, workers.

The server, skip marker and schema helpers come from tests/pg_server.py: tests skip when no server answers,
except with FHIRGATE_REQUIRE_POSTGRES=1, where they fail.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
from psycopg import sql

import pg_server
from fhirgate.audit.pg_log import PgAuditLog
from fhirgate.audit.pg_schema import TRIGGERS
from fhirgate.audit.record import AuditRecord
from pg_server import POSTGRES_URL

CHAIN_KEY = b"test-chain-key-0123456789abcdef!"


def scratch_schema() -> str:
    """A fresh schema name for one test."""
    return pg_server.scratch_schema("fg_audit")


def make_record(i: int = 0, **overrides: Any) -> AuditRecord:
    """A search record; keyword arguments override AuditRecord.new parameters."""
    params: dict[str, Any] = {
        "request_id": f"req-{i}",
        "transport": "http",
        "method": "tools/call",
        "name": "search",
        "interaction": "search",
        "balp_kind": "query",
        "outcome": "success",
        "arguments": {"resourceType": "Observation", "patient": "p1", "i": i},
        "resource_type": "Observation",
        "query_params": ["patient"],
        "patients": ["p1"],
        "references": [f"Observation/o{i}"],
        "reason": "scope.granted",
        "latency_ms": 1.5,
    }
    params.update(overrides)
    return AuditRecord.new(**params)


def pg_tamper(schema: str, *statements: str, params: tuple[Any, ...] = (), restore_triggers: bool = True) -> None:
    """Act as the database superuser without the chain key: disable the append-only triggers, run the
    statements, then (by default) re-enable them to hide the traces."""
    tables = sorted({table for table, _ in TRIGGERS.values()})
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        for table in tables:
            conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(sql.Identifier(table)))
        for statement in statements:
            conn.execute(statement.encode(), params if "%s" in statement else None)
        if restore_triggers:
            for name, (table, _) in TRIGGERS.items():
                conn.execute(
                    sql.SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(
                        sql.Identifier(table), sql.Identifier(name)
                    )
                )


def append_worker(schema: str, worker: int, threads: int, per_thread: int) -> list[int]:
    """One worker process: its own PgAuditLog, `threads` threads each appending `per_thread` records."""
    log = PgAuditLog(POSTGRES_URL, schema=schema, chain_key=CHAIN_KEY, pool_size=threads)
    seqs: list[int] = []
    lock = threading.Lock()

    def run(t: int) -> None:
        for i in range(per_thread):
            seq = log.append(make_record(i, request_id=f"w{worker}-t{t}-{i}"))
            with lock:
                seqs.append(seq)

    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    log.close()
    return seqs
