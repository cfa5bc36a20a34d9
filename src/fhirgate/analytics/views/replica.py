"""ViewReplica: the practice views of a PostgreSQL store, kept in a local SQLite file and caught up before each use.

A data directory's SQLite store keeps its views beside its resources, current on every write. A PostgreSQL store
serves many workers and hosts, so its views live in a replica instead: a SQLite store (encrypted with a key the
location keeps) holding the resources of the types the views read, with the same PracticeViews maintained on
every change. Before every analytics call (the SQL sandbox's `before_read`) the replica pulls what changed in
PostgreSQL since the snapshot it last read (store/postgres/changes.py), so a query sees every write committed
before it started. The SQL sandbox, its policy confinement, the reports and de-identification then run unchanged
over the replica: one SQL dialect (SQLite's) and one confinement engine for every backend.

One file per host serves every worker process there: catch-ups are serialized by SQLite's write lock and each
reads the replica's position inside it (SqliteStore.mirror). The file is a cache: deleting it (with the server
stopped) only makes the next start rebuild it from PostgreSQL.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Collection, Generator
from pathlib import Path
from typing import Protocol

from fhirgate.analytics.views.maintenance import PracticeViews
from fhirgate.store.contract import MirrorChange
from fhirgate.store.sqlite.store import SqliteStore

# The store_meta row holding the PostgreSQL snapshot the replica has applied every change up to.
POSITION = "replica.source_snapshot"
FILE = "views.db"


class ChangeSource(Protocol):
    """Where a replica's changes come from (store.postgres.changes.PgChangeFeed)."""

    def unchanged_until(self, snapshot: str, types: Collection[str] | None) -> str | None:
        """The current snapshot when nothing of `types` (None: any type) changed since `snapshot`, else None."""
        ...

    def pull(self, snapshot: str | None, types: Collection[str] | None) -> Generator[list[MirrorChange], None, str]:
        """Yield the changes since `snapshot` in chunks; return the new snapshot."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


def replica_dir(base: Path, source: str) -> Path:
    """The replica folder for one source under `base`: named by a digest of the source (a URL without password)."""
    return base / hashlib.sha256(source.encode()).hexdigest()[:16]


class ViewReplica:
    """The practice views of one PostgreSQL store schema in a SQLite file, caught up on demand."""

    def __init__(self, folder: Path, source: ChangeSource, *, key: str | None) -> None:
        """Open (creating) the replica in `folder` (made private to this user) and catch it up at once."""
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(folder, 0o700)  # the replica holds PHI: like a data directory, private to the server's user
        self.path = folder / FILE
        self.key = key
        self._source = source
        self._lock = threading.Lock()
        self._position: str | None = None
        self._types: frozenset[str] | None = None
        self.store = SqliteStore(self.path, key=key, derived=PracticeViews())
        try:
            for name in (self.path, self.path.with_name(FILE + "-wal"), self.path.with_name(FILE + "-shm")):
                if name.exists():
                    os.chmod(name, 0o600)
            self.catch_up()
        except BaseException:
            self.close()
            raise

    def catch_up(self) -> int:
        """Apply what changed in the source since the last catch-up (any process's); returns the changes applied.

        When nothing changed this is one index probe in PostgreSQL and no write here.
        """
        with self._lock:
            if self._position is not None:
                unchanged = self._source.unchanged_until(self._position, self._types)
                if unchanged is not None:  # nothing to apply: later probes start from now
                    self._position = unchanged
                    return 0
            mirrored = self.store.mirror(POSITION, self._source.pull)
            self._position, self._types = mirrored.position, mirrored.types
            return mirrored.applied

    def close(self) -> None:
        """Close the replica store and the source's connection."""
        try:
            self.store.close()
        finally:
            self._source.close()
