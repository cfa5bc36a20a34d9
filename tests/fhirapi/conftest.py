"""Fixtures for the FHIR REST API: a demo practice (writes off) and another (writes on), each served by the real
Starlette app (`create_http_app(..., fhir_api=True)`) through starlette's TestClient, with dev-issuer tokens."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fhirapi_support import Api, build_practice, serve


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    data_dir, facts = build_practice(tmp_path_factory.mktemp("fhirapi"))
    yield from serve(data_dir, facts, allow_writes=False)


@pytest.fixture(scope="module")
def api_rw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    data_dir, facts = build_practice(tmp_path_factory.mktemp("fhirapi-rw"), patients=12)
    yield from serve(data_dir, facts, allow_writes=True)
