"""A PostgreSQL location: `--data postgresql://user@host/db?schema=NAME` keeps all state in one database schema.

Every worker process on every host that is given the same URL shares the same state: the FHIR store
(store.postgres), the audit chain (audit.pg_log), write proposals (writes.pg_approvals), and — kept here —
the settings (the fhirgate.toml content, table `fhirgate_settings`) and the named secrets (cursor,
pseudonym, request-state and audit-chain keys, the development issuer's key; table `fhirgate_secrets`),
so a cursor signed by one worker is accepted by another and all append to one chain.

Secrets in the database are readable by whoever can read the database. The audit chain's guarantee
(HIPAA 45 CFR 164.312(b): tampering is provable) assumes the chain key is NOT available to someone who can
edit the audit table, so production deployments set $FHIRGATE_KEYS_DIR: secrets are then read from (and
created in) that directory, as `keys/` of a data directory, and must be the same files on every host.
"""

from __future__ import annotations

import os
import secrets as random
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import tomli_w
from psycopg import sql

from fhirgate.config import DataDir, Settings, parse_settings
from fhirgate.errors import ConfigError, StoreError
from fhirgate.store.postgres.schema import SCHEMA_RE

if TYPE_CHECKING:
    from fhirgate.auth.devissuer import DevIssuer
    from fhirgate.auth.tokens import TrustedIssuer

KEYS_DIR_ENV = "FHIRGATE_KEYS_DIR"
DEFAULT_SCHEMA = "fhirgate"
SETTINGS_NAME = "fhirgate.toml"
DEV_ISSUER_SECRET = "dev-issuer-key"  # noqa: S105 - the name of a secret, not one
_TABLES = (
    "CREATE TABLE IF NOT EXISTS fhirgate_settings(name text PRIMARY KEY, body text NOT NULL)",
    "CREATE TABLE IF NOT EXISTS fhirgate_secrets(name text PRIMARY KEY, value bytea NOT NULL)",
)
_CONNECT_TIMEOUT = 10


def split_url(url: str) -> tuple[str, str, str]:
    """(libpq URL without fhirgate's `schema` parameter, schema, the URL as shown: no password)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError("a database location must be a postgresql:// URL")
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [v for k, v in query if k == "schema"]
    schema = schemas[-1] if schemas else DEFAULT_SCHEMA
    if not SCHEMA_RE.match(schema):
        raise ConfigError("the URL's schema parameter must be a plain lower-case SQL identifier ([a-z_][a-z0-9_]*)")
    rest = urlencode([(k, v) for k, v in query if k not in ("schema", "password")])
    conninfo = urlunsplit((parts.scheme, parts.netloc, parts.path, rest, ""))
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    shown_query = urlencode([(k, v) for k, v in query if k != "password"])
    shown = urlunsplit((parts.scheme, netloc, parts.path, shown_query, ""))
    return conninfo, schema, shown


class PostgresLocation:
    """Settings and secrets in a PostgreSQL schema, beside the store, audit chain and proposals kept there."""

    def __init__(self, url: str) -> None:
        self.url, self.schema, self._shown = split_url(url)
        keys = os.environ.get(KEYS_DIR_ENV)
        # Secrets from a directory when one is configured (see the module docstring), else from the database.
        self._keys = DataDir(keys) if keys else None

    def __repr__(self) -> str:
        return f"PostgresLocation({self._shown!r})"

    @property
    def name(self) -> str:
        """The database URL without its password."""
        return self._shown

    @property
    def base_dir(self) -> Path:
        """Relative paths in the settings (policy file, issuer keys) are relative to the working directory."""
        return Path.cwd()

    @property
    def is_database(self) -> bool:
        """State lives in PostgreSQL: no local store files, no file encryption key."""
        return True

    def _run(self, work: Callable[[psycopg.Connection[tuple[Any, ...]]], Any], *, create: bool) -> Any:
        """Run `work` in one transaction on a short-lived connection with the schema on the search path."""
        try:
            with psycopg.connect(self.url, connect_timeout=_CONNECT_TIMEOUT) as conn, conn.transaction():
                if create:
                    conn.execute(
                        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 7))", (self.schema,)
                    )  # the store's DDL lock: opening workers do not race on CREATE
                    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
                conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(self.schema)))
                if create:
                    for statement in _TABLES:
                        conn.execute(statement)
                return work(conn)
        except psycopg.errors.UndefinedTable:
            return None
        except psycopg.Error as exc:
            raise StoreError(f"cannot use PostgreSQL schema {self.schema} ({type(exc).__name__})") from None

    def ensure(self) -> PostgresLocation:
        """Create the schema and the settings and secrets tables when absent."""
        self._run(lambda conn: None, create=True)
        return self

    def exists(self) -> bool:
        """True when the FHIR store's tables exist in the schema."""

        def probe(conn: psycopg.Connection[tuple[Any, ...]]) -> bool:
            row = conn.execute("SELECT to_regclass('resources') IS NOT NULL").fetchone()
            return bool(row and row[0])

        return bool(self._run(probe, create=False))

    # -- settings -----------------------------------------------------------------------------------

    def _raw_settings(self) -> dict[str, Any]:
        def read(conn: psycopg.Connection[tuple[Any, ...]]) -> str | None:
            row = conn.execute("SELECT body FROM fhirgate_settings WHERE name = %s", (SETTINGS_NAME,)).fetchone()
            return None if row is None else str(row[0])

        text = self._run(read, create=False)
        if not text:
            return {}
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{self._settings_source()}: invalid TOML ({exc})") from None

    def _settings_source(self) -> str:
        return f"settings in PostgreSQL schema {self.schema}"

    def settings(self) -> Settings:
        """The settings kept in the schema (the content a data directory keeps in fhirgate.toml), or defaults."""
        raw = self._raw_settings()
        return parse_settings(raw, self._settings_source()) if raw else Settings()

    def update_settings(self, section: str, values: dict[str, Any]) -> Settings:
        """Merge values into one [section] of the stored settings and return the validated result."""
        self.ensure()
        raw = self._raw_settings()
        raw.setdefault(section, {}).update(values)
        parsed = parse_settings(raw, self._settings_source())
        text = tomli_w.dumps(raw)
        self._run(
            lambda conn: conn.execute(
                "INSERT INTO fhirgate_settings(name, body) VALUES (%s, %s) "
                "ON CONFLICT (name) DO UPDATE SET body = EXCLUDED.body",
                (SETTINGS_NAME, text),
            ),
            create=False,
        )
        return parsed

    # -- secrets ------------------------------------------------------------------------------------

    def _blob(self, name: str, make: Callable[[], bytes]) -> bytes:
        """The stored value of a named secret, inserting `make()` first when none exists (the first writer wins)."""

        def get_or_create(conn: psycopg.Connection[tuple[Any, ...]]) -> bytes:
            conn.execute(
                "INSERT INTO fhirgate_secrets(name, value) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
                (name, make()),
            )
            row = conn.execute("SELECT value FROM fhirgate_secrets WHERE name = %s", (name,)).fetchone()
            return bytes(row[0]) if row is not None else b""

        value: bytes = self._run(get_or_create, create=True)
        return value

    def secret(self, name: str, nbytes: int = 32) -> bytes:
        """A named random secret shared by every process on this database (or read from $FHIRGATE_KEYS_DIR)."""
        if self._keys is not None:
            return self._keys.secret(name, nbytes)
        data = self._blob(name, lambda: random.token_bytes(nbytes))
        if len(data) < 16:
            raise ConfigError(f"secret {name} in schema {self.schema} is too short; delete its row to regenerate")
        return data

    def dev_issuer(self) -> DevIssuer:
        """The development token issuer; its private key is a secret like the others (created on first use)."""
        from fhirgate.auth.devissuer import DevIssuer, new_private_pem

        if self._keys is not None:
            return self._keys.dev_issuer()
        return DevIssuer.from_pem(self._blob(DEV_ISSUER_SECRET, new_private_pem), f"schema {self.schema}")

    def dev_trusted_issuer(self) -> TrustedIssuer:
        """The development issuer as a trusted issuer; ConfigError when no development key was ever created."""
        from fhirgate.auth.devissuer import DevIssuer

        if self._keys is not None:
            return self._keys.dev_trusted_issuer()

        def read(conn: psycopg.Connection[tuple[Any, ...]]) -> bytes | None:
            row = conn.execute("SELECT value FROM fhirgate_secrets WHERE name = %s", (DEV_ISSUER_SECRET,)).fetchone()
            return None if row is None else bytes(row[0])

        pem = self._run(read, create=False)
        if not pem:
            raise ConfigError(
                f"no dev issuer in schema {self.schema}; create one with `fhirgate token --data {self._shown}`"
            )
        return DevIssuer.from_pem(pem, f"schema {self.schema}").trusted_issuer()
