"""Fixtures: a small demo practice in an embedded store, served by a fake upstream (respx) to a RemoteStore."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import respx
from fake_upstream import BASE, FakeUpstream
from remote_support import TODAY

from fhirgate.app import build_gateway
from fhirgate.config import DataDir
from fhirgate.demo.generator import write_practice
from fhirgate.remote import FhirClient, StaticTokenAuth
from fhirgate.service.gateway import Gateway
from fhirgate.store.contract import FhirStore
from fhirgate.store.factory import open_store
from fhirgate.store.remote import RemoteStore


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> DataDir:
    """A 12-patient demo practice (pat-000011 has opted out) in a data directory trusting the dev issuer."""
    data_dir = DataDir(tmp_path_factory.mktemp("remote-demo")).ensure()
    store = open_store(data_dir)
    try:
        write_practice(store, patients=12, seed=7, today=TODAY)
    finally:
        store.close()
    data_dir.update_settings("auth", {"trust_dev_issuer": True})
    return data_dir


@pytest.fixture(scope="session")
def embedded(demo_dir: DataDir) -> Iterator[FhirStore]:
    store = open_store(demo_dir, create=False)
    yield store
    store.close()


@pytest.fixture
def make_remote(embedded: FhirStore) -> Iterator[Callable[..., tuple[RemoteStore, FakeUpstream]]]:
    """RemoteStores over a fake upstream of the demo store (respx intercepts every request to BASE)."""
    with respx.mock(assert_all_called=False) as router:
        made: list[RemoteStore] = []

        def make(*, paging: str = "offset", everything: bool = True, **client: Any) -> tuple[RemoteStore, FakeUpstream]:
            fake = FakeUpstream(embedded, paging=paging, everything=everything)
            router.route(host="fhir.example.org").mock(side_effect=fake)
            options = {"sleep": lambda s: None, **client}
            store = RemoteStore(FhirClient(BASE, StaticTokenAuth("upstream-token"), **options))
            made.append(store)
            return store, fake

        yield make
        for store in made:
            store.close()


@pytest.fixture
def remote_gateway(
    demo_dir: DataDir, make_remote: Callable[..., tuple[RemoteStore, FakeUpstream]]
) -> Iterator[tuple[Gateway, FakeUpstream]]:
    store, fake = make_remote()
    gateway = build_gateway(demo_dir, key=None, store=store)
    yield gateway, fake
    gateway.close()


@pytest.fixture(scope="session")
def embedded_gateway(demo_dir: DataDir) -> Iterator[Gateway]:
    gateway = build_gateway(demo_dir, key=None)
    yield gateway
    gateway.close()
