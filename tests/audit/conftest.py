"""Fixtures for audit tests: a fresh audit log and its path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from audit_helpers import CHAIN_KEY

from fhirgate.audit.log import AuditLog


@pytest.fixture
def audit_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.db"


@pytest.fixture
def log(audit_path: Path) -> Iterator[AuditLog]:
    with AuditLog(audit_path, chain_key=CHAIN_KEY) as opened:
        yield opened
