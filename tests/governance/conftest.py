"""Fixtures for governance tests: a demo practice and a gateway over it under the default policy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from governance_support import Facts, build_facts

from fhirgate.app import build_gateway
from fhirgate.config import DataDir
from fhirgate.service.gateway import Gateway


@pytest.fixture(scope="session")
def facts(tmp_path_factory: pytest.TempPathFactory) -> Facts:
    return build_facts(DataDir(tmp_path_factory.mktemp("governance")).ensure())


@pytest.fixture(scope="session")
def gateway(facts: Facts) -> Iterator[Gateway]:
    gw = build_gateway(facts.data_dir, key=None)
    yield gw
    gw.close()
