"""Open a location's audit log, write-proposal store and analytics replica (its FHIR store: store.factory).

This is wiring (it imports every backend); the layers below never import it. A PostgreSQL location takes
no file encryption key: the database's own encryption at rest applies (docs/postgres.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from fhirgate.config import DataDir
from fhirgate.errors import ConfigError
from fhirgate.location import Location

if TYPE_CHECKING:
    from fhirgate.analytics.views.replica import ViewReplica
    from fhirgate.audit.chain import AuditStore
    from fhirgate.location.postgres import PostgresLocation
    from fhirgate.writes.proposal_rules import Proposals

AUDIT_CHAIN_SECRET = "audit-chain"  # noqa: S105 - the name of a secret, not one


def no_key(location: PostgresLocation, key: str | None) -> None:
    """Refuse a file encryption key for a database location (it would silently protect nothing)."""
    if key is not None:
        raise ConfigError(
            "an encryption key (--key-file, $FHIRGATE_DB_KEY_FILE, $FHIRGATE_DB_KEY) applies to the SQLite files of "
            f"a data directory; {location.name} is a PostgreSQL database: unset it and use the database's "
            "encryption at rest"
        )


def as_database(location: Location) -> PostgresLocation:
    """The location as a PostgresLocation (ConfigError for any other kind claiming to be a database)."""
    from fhirgate.location.postgres import PostgresLocation

    if not isinstance(location, PostgresLocation):
        raise ConfigError(f"unsupported data location {location.name}")
    return location


def audit_exists(location: Location) -> bool:
    """True when an audit log was created here (commands that only read it refuse to create one)."""
    if isinstance(location, DataDir):
        return location.audit_path.exists()
    return True  # the PostgreSQL audit tables are created on first open; an empty chain verifies


def open_audit(location: Location, *, key: str | None = None) -> AuditStore:
    """The location's hash-chained audit log (one chain shared by every process using the location)."""
    chain_key = location.secret(AUDIT_CHAIN_SECRET)
    if location.is_database:
        from fhirgate.audit.pg_log import open_pg_audit

        location = as_database(location)
        no_key(location, key)
        location.ensure()
        return open_pg_audit(location.url, location.schema, chain_key)
    if not isinstance(location, DataDir):
        raise ConfigError(f"unsupported data location {location.name}")
    from fhirgate.audit.log import AuditLog

    location.ensure()
    return AuditLog(location.audit_path, key=key, chain_key=chain_key)


def open_proposals(location: Location, *, key: str | None = None) -> Proposals:
    """The location's store of write proposals and confirmation nonces (docs/writes.md)."""
    from fhirgate.writes import approvals

    if location.is_database:
        from fhirgate.writes.pg_approvals import open_pg_proposals

        location = as_database(location)
        no_key(location, key)
        location.ensure()
        return open_pg_proposals(location.url, location.schema, location.secret(approvals.SECRET_NAME))
    if not isinstance(location, DataDir):
        raise ConfigError(f"unsupported data location {location.name}")
    return approvals.open_proposals(location, key=key)


REPLICA_DIR_ENV = "FHIRGATE_REPLICA_DIR"
REPLICA_SECRET = "analytics-replica"  # noqa: S105 - the name of a secret, not one


def replica_base() -> Path:
    """Where analytics replicas live on this host: $FHIRGATE_REPLICA_DIR, else $XDG_CACHE_HOME/fhirgate/replicas."""
    chosen = os.environ.get(REPLICA_DIR_ENV)
    if chosen:
        return Path(chosen).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "fhirgate" / "replicas"


def open_view_replica(location: Location, store: object) -> ViewReplica:
    """The analytics views of a PostgreSQL location's store: a local replica, encrypted with a location secret.

    The key is the location's `analytics-replica` secret (kept in the database, or in $FHIRGATE_KEYS_DIR), so a
    copied replica file is unreadable without it. ConfigError for a store without a change feed.
    """
    from fhirgate.analytics.views.replica import ViewReplica, replica_dir
    from fhirgate.store.postgres.changes import PgChangeFeed

    connection = getattr(store, "connection_args", None)
    if not location.is_database or not callable(connection):
        raise ConfigError("an analytics replica needs the PostgreSQL store of a database location")
    url, schema = connection()
    folder = replica_dir(replica_base(), f"{location.name}#{schema}")
    return ViewReplica(folder, PgChangeFeed(url, schema), key=location.secret(REPLICA_SECRET).hex())
