"""[upstream] in fhirgate.toml, `serve --fhir-base`, and the start-up line (no secrets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fhirgate.config import DataDir
from fhirgate.errors import ConfigError
from fhirgate.remote.auth import BackendServicesAuth, StaticTokenAuth
from fhirgate.remote.settings import NoAuth, UpstreamSettings, build_client, describe_upstream, open_remote_store
from fhirgate.store.remote import RemoteStore

BASE = "https://fhir.example.org/r4"


def _settings(tmp_path: Path, table: dict[str, Any]) -> UpstreamSettings | None:
    data_dir = DataDir(tmp_path).ensure()
    return data_dir.update_settings("upstream", table).upstream


def test_absent_table_means_the_embedded_store(tmp_path: Path) -> None:
    assert DataDir(tmp_path).settings().upstream is None
    assert open_remote_store(None, tmp_path) is None
    assert describe_upstream(None) is None


def test_static_token_from_the_environment(tmp_path: Path) -> None:
    settings = _settings(tmp_path, {"base_url": BASE, "auth": "static", "token_env": "UPSTREAM_TOKEN"})
    assert settings is not None and settings.token_env == "UPSTREAM_TOKEN"
    client = build_client(settings, tmp_path, environ={"UPSTREAM_TOKEN": "abc.def"})
    assert isinstance(client._auth, StaticTokenAuth)
    with pytest.raises(ConfigError, match="UPSTREAM_TOKEN is not set"):
        build_client(settings, tmp_path, environ={})
    line = describe_upstream(settings)
    assert line is not None and BASE in line and "static" in line and "abc.def" not in line
    client.close()


def test_backend_services_reads_the_key_file(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "upstream.pem").write_bytes(pem)
    table = {
        "base_url": BASE,
        "auth": "backend-services",
        "client_id": "fhirgate",
        "private_key_file": "upstream.pem",
        "alg": "ES384",
        "kid": "k1",
        "token_url": "https://auth.example.org/token",
    }
    settings = _settings(tmp_path, table)
    client = build_client(settings, tmp_path)
    assert isinstance(client._auth, BackendServicesAuth)
    line = describe_upstream(settings)
    assert line is not None and "BEGIN" not in line and "backend-services" in line
    client.close()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"auth": "basic"}, "upstream.auth must be one of"),
        ({"auth": "static"}, "needs token_env"),
        ({"auth": "backend-services", "client_id": "x"}, "needs private_key_file, kid"),
        ({"alg": "RS256"}, "RS384 or ES384"),
        ({"token": "secret"}, "unknown keys"),
        ({"base_url": "ftp://x"}, "https URL"),
        ({"paging": "pages"}, "upstream.paging"),
    ],
)
def test_bad_tables_stop_the_server(tmp_path: Path, table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _settings(tmp_path, table)


def test_fhir_base_overrides_and_none_is_loopback_only(tmp_path: Path) -> None:
    settings = UpstreamSettings(base_url=BASE, auth="none")
    with pytest.raises(ConfigError, match="loopback"):
        build_client(settings, tmp_path)
    store = open_remote_store(settings, tmp_path, "http://127.0.0.1:9/fhir")
    assert isinstance(store, RemoteStore) and store.client.base_url == "http://127.0.0.1:9/fhir"
    assert isinstance(store.client._auth, NoAuth)
    assert describe_upstream(settings, "http://127.0.0.1:9/fhir") is not None
    store.close()
    with pytest.raises(ConfigError, match="no upstream FHIR server"):
        build_client(UpstreamSettings(), tmp_path)
