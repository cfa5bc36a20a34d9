"""Fixtures for safe-write tests: a demo practice with bookable Slots, a gateway with writes on, principals.

The practice is generated with today's date so its Slots (the next three weeks) lie in the future of the
real clock the proposal store uses. Each test gets its own copy of the data directory (writes change it).
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp.server.mcpserver import MCPServer

from fhirgate.app import build_gateway
from fhirgate.config import DataDir
from fhirgate.core.policy.principal import Principal
from fhirgate.demo.generator import write_practice
from fhirgate.mcp.server import build_server
from fhirgate.policy_loader import load_policy
from fhirgate.service.gateway import Gateway
from fhirgate.store.factory import open_store

PATIENTS = 30


@pytest.fixture(scope="session")
def practice_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = DataDir(tmp_path_factory.mktemp("writes-practice")).ensure()
    store = open_store(data)
    try:
        write_practice(store, patients=PATIENTS, seed=11, today=dt.date.today())
    finally:
        store.close()
    return data.path


@pytest.fixture
def data_dir(practice_dir: Path, tmp_path: Path) -> DataDir:
    target = tmp_path / "data"
    shutil.copytree(practice_dir, target)
    return DataDir(target)


@pytest.fixture
def gateway(data_dir: DataDir) -> Iterator[Gateway]:
    gw = build_gateway(data_dir, key=None, policy=load_policy(None).with_writes_enabled())
    yield gw
    gw.close()


@pytest.fixture
def readonly_gateway(data_dir: DataDir) -> Iterator[Gateway]:
    gw = build_gateway(data_dir, key=None)
    yield gw
    gw.close()


@pytest.fixture
def make_server(gateway: Gateway) -> Callable[[Principal], MCPServer[Any]]:
    def make(p: Principal) -> MCPServer[Any]:
        return build_server(gateway, transport="in-memory", principal=p)

    return make
