"""Display tables built from the codes seen in the loaded data: (system, code, display) of Conditions,
Observations, MedicationRequests and Immunizations, read from the store's materialized practice views.

The store file is opened read-only (as the SQL sandbox does); the views are `condition`, `observation`,
`medication_request` and `immunization`, each with `system`, `code`, `display` and `_rid` columns
(analytics/views/definitions). Codings of resources carrying any `meta.security` label are left out, so a
lookup never reveals that a sensitive diagnosis exists in the practice. Only which codes occur is kept: no
counts, no patients. Tables are cached and rebuilt when the store's fingerprint of those types changes,
checked at most every `ttl` seconds.
"""

# ruff: noqa: S608 - table names come from the fixed VIEWS tuple, never from callers.

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw

from fhirgate.database import open_sqlite
from fhirgate.errors import StoreError

# (view table, resource type) whose codings are read.
VIEWS = (
    ("condition", "Condition"),
    ("observation", "Observation"),
    ("medication_request", "MedicationRequest"),
    ("immunization", "Immunization"),
)
MAX_DISPLAY = 200
MAX_CODES = 200_000


@dataclass(frozen=True, slots=True)
class SeenCode:
    """One coding seen in the data: system URI, code, its most frequent display, and the resource type."""

    system: str
    code: str
    display: str
    resource_type: str


def _read_view(conn: apsw.Connection, table: str, rtype: str) -> list[SeenCode]:
    labelled = (
        "SELECT t.rid FROM main.ix_token t WHERE t.pid IN "
        f"(SELECT pid FROM main.params WHERE code = '_security' AND rtype = '{rtype}')"
    )
    rows: list[Any] = conn.execute(
        f"SELECT system, code, display, count(*) AS n FROM main.{table} "
        f"WHERE system IS NOT NULL AND code IS NOT NULL AND _rid NOT IN ({labelled}) "
        "GROUP BY system, code, display ORDER BY system, code, n DESC, display"
    ).fetchall()
    out: list[SeenCode] = []
    last: tuple[str, str] | None = None
    for system, code, display, _ in rows:
        if (system, code) == last:
            continue  # the most frequent display of a code comes first
        last = (system, code)
        text = display if isinstance(display, str) and display.strip() else ""
        out.append(SeenCode(str(system), str(code), text.strip()[:MAX_DISPLAY], rtype))
    return out


def read_seen(path: Path, *, key: str | None = None) -> list[SeenCode]:
    """The codes seen in the store file at `path` (views that do not exist yet are skipped)."""
    conn = open_sqlite(Path(path), key=key, readonly=True)
    try:
        conn.execute("PRAGMA query_only=ON")
        tables = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
        out: list[SeenCode] = []
        for table, rtype in VIEWS:
            if table in tables and {"ix_token", "params"} <= tables:
                out.extend(_read_view(conn, table, rtype))
        return out[:MAX_CODES]
    except apsw.Error as exc:
        raise StoreError(f"codes seen in the data could not be read ({type(exc).__name__})") from None
    finally:
        conn.close()


class SeenCodes:
    """The cached seen-codes table of one store, rebuilt when its fingerprint changes."""

    def __init__(
        self,
        source: Callable[[], Iterable[SeenCode]],
        fingerprint: Callable[[], str] | None = None,
        *,
        ttl: float = 30.0,
    ) -> None:
        """`source` reads the codes; `fingerprint` (None: read once) tells when to read them again."""
        self._source = source
        self._fingerprint = fingerprint
        self._ttl = ttl
        self._lock = threading.Lock()
        self._codes: tuple[SeenCode, ...] | None = None
        self._version = ""
        self._checked = 0.0
        self.generation = 0

    @classmethod
    def for_store(cls, store: Any, *, ttl: float = 30.0) -> SeenCodes | None:
        """Seen codes of a SQLite store (one with `reopen_args`); None for other backends."""
        reopen = getattr(store, "reopen_args", None)
        if not callable(reopen):
            return None
        path, key = reopen()

        def fingerprint() -> str:
            return "/".join(str(store.fingerprint(rtype)) for _, rtype in VIEWS)

        return cls(lambda: read_seen(path, key=key), fingerprint, ttl=ttl)

    def current(self) -> tuple[SeenCode, ...]:
        """The codes as of the latest check; `generation` increases whenever they were re-read."""
        with self._lock:
            now = time.monotonic()
            if self._codes is not None and (self._fingerprint is None or now - self._checked < self._ttl):
                return self._codes
            version = self._fingerprint() if self._fingerprint is not None else ""
            self._checked = now
            if self._codes is None or version != self._version:
                self._codes = tuple(self._source())
                self._version = version
                self.generation += 1
            return self._codes
