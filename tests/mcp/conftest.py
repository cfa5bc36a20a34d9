"""Fixtures for MCP edge tests: the practice (as in tests/service), a gateway, in-memory servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp.server.mcpserver import MCPServer
from mcp_support import practice_data

from fhirgate.app import build_gateway
from fhirgate.core.policy.principal import Principal
from fhirgate.mcp.server import build_server
from fhirgate.service.gateway import Gateway


@pytest.fixture(scope="session")
def practice(tmp_path_factory: pytest.TempPathFactory, synthea_dir: Path) -> Any:
    return practice_data.load_practice(tmp_path_factory.mktemp("mcp-practice"), synthea_dir)


@pytest.fixture(scope="session")
def gateway(practice: Any) -> Iterator[Gateway]:
    gw = build_gateway(practice.data_dir, key=None)
    yield gw
    gw.close()


@pytest.fixture
def make_server(gateway: Gateway) -> Callable[[Principal], MCPServer[Any]]:
    def make(p: Principal) -> MCPServer[Any]:
        return build_server(gateway, transport="in-memory", principal=p)

    return make
