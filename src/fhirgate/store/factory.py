"""Open the store backend a data location names (a data directory now; PostgreSQL URLs later)."""

from __future__ import annotations

from fhirgate.config import DataDir
from fhirgate.store.contract import FhirStore


def open_store(data_dir: DataDir, *, key: str | None = None, create: bool = True) -> FhirStore:
    """The embedded SQLite store in `data_dir` (created when `create`), encrypted when a key is given.

    It maintains the analytics views (analytics.views) as tables beside the resources.
    """
    from fhirgate.errors import ConfigError
    from fhirgate.store.sqlite.store import SqliteStore

    if not create and not data_dir.store_path.exists():
        raise ConfigError(
            f"no store in {data_dir.path}: run `fhirgate demo-data --data {data_dir.path}` "
            f"or `fhirgate load --data {data_dir.path} FILES...` first"
        )
    data_dir.ensure()
    # The practice views (and user views) are materialized beside the store and kept current by every write;
    # imported here, not at module level: the store layer itself never depends on analytics.
    from fhirgate.analytics.views.maintenance import PracticeViews

    return SqliteStore(data_dir.store_path, key=key, derived=PracticeViews())
