"""The embedded SQLite store backend."""

from fhirgate.store.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
