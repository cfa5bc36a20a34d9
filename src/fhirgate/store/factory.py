"""Open the FHIR store a data location names: SQLite in a data directory, or a PostgreSQL schema."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fhirgate.config import DataDir
from fhirgate.errors import ConfigError
from fhirgate.location import Location
from fhirgate.store.contract import FhirStore


def _missing_store(location: Location) -> ConfigError:
    return ConfigError(
        f"no store in {location.name}: run `fhirgate demo-data --data {location.name}` "
        f"or `fhirgate load --data {location.name} FILES...` first"
    )


def open_store(location: Location, *, key: str | None = None, create: bool = True) -> FhirStore:
    """The location's FHIR store (created when `create`); a data directory's keeps the analytics views current."""
    if location.is_database:  # psycopg is imported only for a PostgreSQL location
        from fhirgate.location.backends import as_database, no_key
        from fhirgate.store.postgres.store import PostgresStore

        location = as_database(location)
        no_key(location, key)
        if not create and not location.exists():
            raise _missing_store(location)
        location.ensure()
        return PostgresStore(location.url, schema=location.schema, create=create)
    if not isinstance(location, DataDir):
        raise ConfigError(f"unsupported data location {location.name}")
    if not create and not location.store_path.exists():
        raise _missing_store(location)
    location.ensure()
    # The practice views (and user views) are materialized beside the store and kept current by every write;
    # imported here, not at module level: the store layer itself never depends on analytics.
    from fhirgate.analytics.views.maintenance import PracticeViews
    from fhirgate.store.sqlite.store import SqliteStore

    return SqliteStore(location.store_path, key=key, derived=PracticeViews())


@dataclass(frozen=True, slots=True)
class StoreAddress:
    """How another process opens its own connection to an open store (picklable: a loader's workers use it)."""

    kind: Literal["sqlite", "postgres"]
    target: str  # the SQLite file, or the libpq URL
    key: str | None = None  # SQLite encryption key
    schema: str | None = None  # PostgreSQL schema

    def open(self) -> FhirStore:
        """A store on the same data for reading (SQLite: no views maintained; PostgreSQL: a one-connection pool)."""
        if self.kind == "postgres":
            from fhirgate.store.postgres.store import PostgresStore

            return PostgresStore(self.target, schema=self.schema or "fhirgate", create=False, pool_size=1)
        from fhirgate.store.sqlite.store import SqliteStore

        return SqliteStore(Path(self.target), key=self.key, create=False)


def store_address(store: FhirStore) -> StoreAddress | None:
    """The address of a SQLite or PostgreSQL store, or None for a backend other processes cannot open."""
    reopen = getattr(store, "reopen_args", None)
    if callable(reopen):
        path, key = reopen()
        return StoreAddress("sqlite", str(path), key=key)
    connection = getattr(store, "connection_args", None)
    if callable(connection):
        url, schema = connection()
        return StoreAddress("postgres", url, schema=schema)
    return None
