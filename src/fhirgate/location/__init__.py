"""Where a deployment keeps its state: a data directory (SQLite files) or a PostgreSQL database.

Every command takes `--data`: a directory path, or a `postgresql://` URL. Both kinds answer the same
questions (settings, named secrets, the development issuer) so the CLI and the app never branch on
which one they have; `location.backends` opens the store, audit log and proposal store of either.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from fhirgate.config import DataDir, Settings

if TYPE_CHECKING:
    from fhirgate.auth.devissuer import DevIssuer
    from fhirgate.auth.tokens import TrustedIssuer

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class Location(Protocol):
    """A deployment's state: a data directory or a PostgreSQL database (see the module docstring)."""

    @property
    def name(self) -> str:
        """How messages name this location: the directory, or the database URL without a password."""
        ...

    @property
    def base_dir(self) -> Path:
        """The directory relative paths in the settings (policy file, issuer keys) are resolved against."""
        ...

    @property
    def is_database(self) -> bool:
        """True for a PostgreSQL location (no local store files, no encryption key)."""
        ...

    def ensure(self) -> Location:
        """Create what holds the settings and secrets, if missing."""
        ...

    def exists(self) -> bool:
        """True when a store has been created here."""
        ...

    def settings(self) -> Settings:
        """The fhirgate.toml settings kept here, or defaults."""
        ...

    def update_settings(self, section: str, values: dict[str, Any]) -> Settings:
        """Merge values into one settings section and return the validated result."""
        ...

    def secret(self, name: str, nbytes: int = 32) -> bytes:
        """A named random secret, created on first use and then the same for every process."""
        ...

    def dev_issuer(self) -> DevIssuer:
        """The local development token issuer (created on first use)."""
        ...

    def dev_trusted_issuer(self) -> TrustedIssuer:
        """The development issuer's public key as a trusted issuer (ConfigError when none exists)."""
        ...


def is_database_url(spec: str) -> bool:
    """True when `--data` names a PostgreSQL database rather than a directory."""
    return spec.strip().lower().startswith(POSTGRES_SCHEMES)


def open_location(spec: str | Path) -> Location:
    """The location `--data` names: a PostgreSQL URL (postgresql://…[?schema=NAME]) or a directory."""
    text = str(spec)
    if is_database_url(text):
        from fhirgate.location.postgres import PostgresLocation

        return PostgresLocation(text)
    return DataDir(text)


__all__ = ["Location", "is_database_url", "open_location"]
