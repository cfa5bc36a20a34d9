"""Helpers shared by the audit tests: a record factory, filling a log, and tampering as an attacker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apsw

from fhirgate.audit.log import TRIGGERS, AuditLog
from fhirgate.audit.record import AuditRecord

CHAIN_KEY = b"test-chain-key-0123456789abcdef!"


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


def fill(log: AuditLog, n: int) -> list[int]:
    """Append n records and return their seqs."""
    return [log.append(make_record(i)) for i in range(n)]


def tamper(path: Path, *statements: str, params: tuple[Any, ...] = (), restore_triggers: bool = True) -> None:
    """Act as an attacker with write access to audit.db but not the key: drop the append-only triggers,
    run the statements, then (by default) put the triggers back to hide the traces."""
    conn = apsw.Connection(str(path))
    conn.setbusytimeout(5000)
    for name in TRIGGERS:
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")
    for sql in statements:
        conn.execute(sql, params if "?" in sql else ())
    if restore_triggers:
        for sql in TRIGGERS.values():
            conn.execute(sql)
    conn.close()
