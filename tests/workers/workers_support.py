"""Shared set-up for the many-workers tests: a small demo data directory and a policy with a Redis URL."""

from __future__ import annotations

import os
import re
from pathlib import Path

from fhirgate.auth.devissuer import DevIssuer
from fhirgate.config import DataDir
from fhirgate.demo.generator import write_practice
from fhirgate.policy_loader import default_policy_text
from fhirgate.store.factory import open_store

REDIS_URL = os.environ.get("FHIRGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def make_demo(path: Path, *, patients: int = 30, key: str | None = None) -> DataDir:
    """A demo practice of `patients` patients (encrypted with `key` if given) trusting the dev issuer."""
    data_dir = DataDir(path).ensure()
    store = open_store(data_dir, key=key)
    try:
        write_practice(store, patients=patients, seed=11)
    finally:
        store.close()
    data_dir.update_settings("auth", {"trust_dev_issuer": True})
    DevIssuer.load_or_create(data_dir.keys_dir)
    return data_dir


def policy_with_redis(folder: Path, redis_url: str | None = REDIS_URL, *, capacity: int | None = None) -> Path:
    """The default policy with `[rate_limits] redis_url` set (and the capacity raised when given), as a file."""
    text = default_policy_text()
    if redis_url is not None:
        text, n = re.subn(r"(?m)^# redis_url = .*$", f'redis_url = "{redis_url}"', text, count=1)
        assert n == 1, "the default policy no longer carries the commented redis_url line"
    if capacity is not None:
        text = re.sub(r"(?m)^capacity = .*$", f"capacity = {capacity}", text, count=1)
    path = folder / "workers-policy.toml"
    path.write_text(text, encoding="utf-8")
    return path
