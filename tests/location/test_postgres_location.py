"""A PostgreSQL location keeps settings, secrets and the dev issuer in the database, the same for every process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fhirgate.errors import ConfigError
from fhirgate.location import open_location
from fhirgate.location.backends import open_audit, open_proposals
from fhirgate.location.postgres import KEYS_DIR_ENV, PostgresLocation
from fhirgate.store.factory import open_store
from pg_server import drop_schema, location_url, needs_postgres, scratch_schema

pytestmark = needs_postgres


@pytest.fixture
def url() -> Iterator[str]:
    schema = scratch_schema("fg_loc")
    yield location_url(schema)
    drop_schema(schema)


def _location(url: str) -> PostgresLocation:
    location = open_location(url)
    assert isinstance(location, PostgresLocation)
    return location


def test_secrets_are_created_once_and_shared(url: str) -> None:
    first, second = _location(url), _location(url)
    cursor = first.secret("cursor")
    assert len(cursor) == 32
    assert second.secret("cursor") == cursor  # another process (worker) gets the same key
    assert first.secret("pseudonym") != cursor


def test_settings_round_trip_and_validation(url: str) -> None:
    location = _location(url)
    assert location.settings().resource_url == "http://127.0.0.1:8765/mcp"  # defaults before anything is stored
    location.update_settings("server", {"resource_url": "https://fhirgate.example/mcp"})
    location.update_settings("auth", {"trust_dev_issuer": True})
    settings = _location(url).settings()
    assert settings.resource_url == "https://fhirgate.example/mcp"
    assert settings.trust_dev_issuer
    with pytest.raises(ConfigError, match="resource_url must be an http"):
        location.update_settings("server", {"resource_url": "ftp://nope"})
    assert _location(url).settings().resource_url == "https://fhirgate.example/mcp"  # a rejected update stores nothing


def test_dev_issuer_is_shared_and_verifiable(url: str) -> None:
    location = _location(url)
    with pytest.raises(ConfigError, match="no dev issuer"):
        location.dev_trusted_issuer()
    issuer = location.dev_issuer()
    assert _location(url).dev_issuer().issuer == issuer.issuer
    assert _location(url).dev_trusted_issuer().issuer == issuer.issuer


def test_keys_dir_keeps_secrets_out_of_the_database(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEYS_DIR_ENV, str(tmp_path / "keys"))
    location = _location(url)
    chain = location.secret("audit-chain")
    assert (tmp_path / "keys" / "keys" / "audit-chain.secret").read_bytes() == chain
    monkeypatch.delenv(KEYS_DIR_ENV)
    assert _location(url).secret("audit-chain") != chain  # nothing of it was written to the database


def test_store_exists_only_after_creation(url: str) -> None:
    location = _location(url)
    assert not location.exists()
    with pytest.raises(ConfigError, match="no store in postgresql://"):
        open_store(location, create=False)
    open_store(location).close()
    assert location.exists()
    open_store(location, create=False).close()


def test_file_encryption_key_is_refused(url: str) -> None:
    location = _location(url)
    for opener in (open_store, open_audit, open_proposals):
        with pytest.raises(ConfigError, match="applies to the SQLite files"):
            opener(location, key="a-key")  # type: ignore[operator]
