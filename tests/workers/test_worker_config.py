"""The worker config: JSON round trip, no key in the environment, refusal without Redis, CLI checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from workers_support import make_demo, policy_with_redis

from fhirgate.cli.main import main
from fhirgate.config import DataDir
from fhirgate.core.policy.rules import Policy
from fhirgate.database import KEY_ENV, KEY_FILE_ENV
from fhirgate.errors import ConfigError
from fhirgate.policy_loader import load_policy
from fhirgate.workers import (
    CONFIG_ENV,
    WORKER_APP,
    WorkerConfig,
    prepare_workers,
    require_shared_limits,
    worker_app,
)

SECRET_KEY = "correct horse battery staple 4c6f"
FHIRGATE = Path(sys.executable).with_name("fhirgate")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No worker config or key from the outer environment; whatever a test exports is undone afterwards."""
    for name in (CONFIG_ENV, KEY_ENV, KEY_FILE_ENV):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def _redis_policy(folder: Path) -> Policy:
    return load_policy(policy_with_redis(folder))


def _prepare(data_dir: DataDir, policy: Policy, **kw: object) -> str:
    args: dict[str, object] = {
        "workers": 2,
        "key": None,
        "key_file": None,
        "host": "127.0.0.1",
        "policy_file": None,
        "allow_writes": False,
    }
    args.update(kw)
    return prepare_workers(data_dir, data_dir.settings(), policy, **args)  # type: ignore[arg-type]


def test_config_round_trip() -> None:
    config = WorkerConfig(
        data="/srv/fhirgate", host="0.0.0.0", policy_file="/etc/p.toml", allow_writes=True, key_file="/run/k"
    )
    assert WorkerConfig.from_json(config.to_json()) == config
    assert WorkerConfig.from_json(WorkerConfig(data="d").to_json()) == WorkerConfig(data="d")
    assert set(json.loads(config.to_json())) == {"data", "host", "policy_file", "allow_writes", "key_file"}


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"data": "d"}',
        '{"data": "", "host": "h", "policy_file": null, "allow_writes": false, "key_file": null}',
        '{"data": "d", "host": "h", "policy_file": 3, "allow_writes": false, "key_file": null}',
        '{"data": "d", "host": "h", "policy_file": null, "allow_writes": "yes", "key_file": null}',
        '{"data": "d", "host": "h", "policy_file": null, "allow_writes": false, "key_file": null, "key": "k"}',
    ],
)
def test_config_rejects_anything_else(text: str) -> None:
    with pytest.raises(ConfigError, match=CONFIG_ENV):
        WorkerConfig.from_json(text)


def test_worker_app_needs_the_env_config() -> None:
    with pytest.raises(ConfigError, match="--workers"):
        worker_app()


def test_refuses_without_redis_and_says_how(data_path: Path) -> None:
    policy = load_policy(None)
    assert policy.redis_url is None
    with pytest.raises(ConfigError) as err:
        require_shared_limits(policy, 3)
    assert "multiplied by 3" in err.value.message
    assert "[rate_limits] redis_url" in err.value.message
    with pytest.raises(ConfigError, match="redis_url"):
        _prepare(DataDir(data_path), policy)
    assert CONFIG_ENV not in os.environ


def test_cli_refuses_without_redis_and_with_stdio(data_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = subprocess.run(
        [str(FHIRGATE), "serve", "--data", str(data_path), "--http", "127.0.0.1:1", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 1
    assert "needs shared rate limits" in out.stderr
    assert "redis_url" in out.stderr
    assert main(["serve", "--data", str(data_path), "--stdio", "--workers", "2"]) == 1
    assert "--http only" in capsys.readouterr().err
    assert main(["serve", "--data", str(data_path), "--http", "127.0.0.1:1", "--workers", "0"]) == 1


def test_exports_config_and_worker_builds_the_app(data_path: Path, tmp_path: Path) -> None:
    policy_file = policy_with_redis(tmp_path)
    target = _prepare(DataDir(data_path), load_policy(policy_file), policy_file=str(policy_file), allow_writes=True)
    assert target == WORKER_APP
    config = WorkerConfig.from_env()
    assert config == WorkerConfig(str(data_path), "127.0.0.1", str(policy_file.resolve()), True, None)
    with TestClient(worker_app()) as client:
        assert client.get("/healthz").json() == {"status": "ok"}


def test_key_never_reaches_the_env_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = make_demo(tmp_path / "enc", patients=3, key=SECRET_KEY)
    key_file = tmp_path / "db.key"
    key_file.write_text(SECRET_KEY + "\n", encoding="utf-8")
    _prepare(data_dir, _redis_policy(tmp_path), key=SECRET_KEY, key_file=str(key_file))
    text = os.environ[CONFIG_ENV]
    assert SECRET_KEY not in text
    assert not any(SECRET_KEY in value for value in os.environ.values())
    assert WorkerConfig.from_env().key_file == str(key_file.resolve())
    with TestClient(worker_app()) as client:  # the worker read the key from the file
        assert client.get("/healthz").status_code == 200

    # From $FHIRGATE_DB_KEY the worker inherits it: the config names no file and still holds no key.
    monkeypatch.setenv(KEY_ENV, SECRET_KEY)
    _prepare(data_dir, _redis_policy(tmp_path), key=SECRET_KEY)
    assert WorkerConfig.from_env().key_file is None
    assert SECRET_KEY not in os.environ[CONFIG_ENV]
    with TestClient(worker_app()) as client:
        assert client.get("/healthz").status_code == 200


def test_key_given_only_in_code_is_refused(tmp_path: Path) -> None:
    data_dir = make_demo(tmp_path / "enc", patients=3, key=SECRET_KEY)
    with pytest.raises(ConfigError, match="reads the encryption key itself"):
        _prepare(data_dir, _redis_policy(tmp_path), key=SECRET_KEY)
    assert CONFIG_ENV not in os.environ


def test_data_location_round_trips_directory_and_database_url(data_path: Path) -> None:
    from fhirgate.location import open_location
    from fhirgate.location.postgres import PostgresLocation
    from fhirgate.workers import data_location

    assert data_location(open_location(str(data_path))) == str(data_path)
    url = "postgresql://fhirgate@db.example:5432/practice?sslmode=require&schema=clinic_a"
    location = open_location(url)
    assert isinstance(location, PostgresLocation)
    again = open_location(data_location(location))
    assert isinstance(again, PostgresLocation)
    assert (again.url, again.schema) == (location.url, location.schema) == (location.url, "clinic_a")
