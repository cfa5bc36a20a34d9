"""Open the store backend a data location names (a data directory now; PostgreSQL URLs later)."""

from __future__ import annotations

from fhirgate.config import DataDir
from fhirgate.store.contract import FhirStore


def open_store(data_dir: DataDir, *, key: str | None = None, create: bool = True) -> FhirStore:
    """The embedded SQLite store in `data_dir` (created when `create`), encrypted when a key is given."""
    from fhirgate.errors import ConfigError
    from fhirgate.store.sqlite.store import SqliteStore

    if not create and not data_dir.store_path.exists():
        raise ConfigError(
            f"no store in {data_dir.path}: run `fhirgate demo-data --data {data_dir.path}` "
            f"or `fhirgate load --data {data_dir.path} FILES...` first"
        )
    data_dir.ensure()
    return SqliteStore(data_dir.store_path, key=key)
