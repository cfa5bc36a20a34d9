"""Opening SQLite databases (store and audit) with apsw-sqlite3mc, optionally encrypted at rest.

apsw-sqlite3mc bundles SQLite 3.54 (JSONB) with SQLite3 Multiple Ciphers; a key given here is applied
with `PRAGMA key` before the first read, so a wrong or missing key fails at open, not mid-request.
The driver choice is measured in benchmarks/sqlite_driver.py and written up in docs/benchmarks.md.
"""

from __future__ import annotations

import os
from pathlib import Path

import apsw

from fhirgate.errors import ConfigError, StoreError

KEY_ENV = "FHIRGATE_DB_KEY"
KEY_FILE_ENV = "FHIRGATE_DB_KEY_FILE"


def resolve_key(key_file: str | os.PathLike[str] | None = None) -> str | None:
    """The encryption key: an explicit key file, else $FHIRGATE_DB_KEY_FILE, else $FHIRGATE_DB_KEY, else None."""
    path = key_file or os.environ.get(KEY_FILE_ENV)
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read encryption key file {path}: {exc.strerror}") from None
        if not text:
            raise ConfigError(f"encryption key file {path} is empty")
        return text
    value = os.environ.get(KEY_ENV)
    return value or None


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def open_sqlite(path: Path, *, key: str | None = None, readonly: bool = False) -> apsw.Connection:
    """Open (creating if needed) a database in WAL mode; with a key, the file is encrypted (ChaCha20-Poly1305)."""
    flags = apsw.SQLITE_OPEN_READONLY if readonly else apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
    try:
        conn = apsw.Connection(str(path), flags=flags)
        conn.setbusytimeout(10_000)
        if key is not None:
            conn.execute(f"PRAGMA key={_quote(key)}")
        # Fails here, not later, when the key is wrong or the file is encrypted and no key was given.
        conn.execute("SELECT count(*) FROM sqlite_schema").fetchall()
        if not readonly:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA cache_size=-65536")
    except apsw.NotADBError:
        raise StoreError(
            f"{path.name} could not be opened: it is encrypted and the key is missing or wrong "
            f"(set ${KEY_ENV} or ${KEY_FILE_ENV})"
        ) from None
    except apsw.Error as exc:
        raise StoreError(f"{path.name} could not be opened: {type(exc).__name__}") from None
    return conn
