"""Fixtures for SQL analytics tests (data and helpers live in sql_support.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sql_support import build_store

from fhirgate.analytics.sql.sandbox import SqlSandbox


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_store(tmp_path_factory.mktemp("sqlstore") / "store.db")


@pytest.fixture(scope="module")
def sandbox(store_path: Path) -> Iterator[SqlSandbox]:
    box = SqlSandbox(store_path)
    yield box
    box.close()
