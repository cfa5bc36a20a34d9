"""Helpers for MCP edge tests: the shared practice loader, principals and audit-log access."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from fhirgate.audit.log import AuditLog
from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.scopes import ScopeSet
from fhirgate.service.gateway import Gateway


def _practice_data() -> Any:
    """tests/service/practice_data.py, loaded by path (test folders are not packages)."""
    name = "fhirgate_test_practice_data"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "service" / "practice_data.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


practice_data = _practice_data()


def principal(scope: str, *, patient: str | None = None, sub: str = "tester") -> Principal:
    return Principal(sub=sub, issuer="urn:test", scopes=ScopeSet.parse(scope), client_id="tests", patient=patient)


def audit_count(gateway: Gateway) -> int:
    log = gateway.audit_sink
    assert isinstance(log, AuditLog)
    return log.count()


def audit_tail(gateway: Gateway, n: int) -> list[Any]:
    log = gateway.audit_sink
    assert isinstance(log, AuditLog)
    return [e.record for e in log.tail(n)]
