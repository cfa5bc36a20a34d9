"""Fixtures: an audit log in a data directory holding the records of disclosure_helpers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from disclosure_helpers import RECORDS

from fhirgate.audit.log import AuditLog
from fhirgate.config import DataDir


@pytest.fixture
def data_dir(tmp_path: Path) -> DataDir:
    data = DataDir(tmp_path / "data").ensure()
    log = AuditLog(data.audit_path, chain_key=data.secret("audit-chain"))
    for rec in RECORDS:
        log.append(rec)
    log.close()
    return data


@pytest.fixture
def audit_log(data_dir: DataDir) -> Iterator[AuditLog]:
    with AuditLog(data_dir.audit_path, chain_key=data_dir.secret("audit-chain")) as opened:
        yield opened
