"""The PostgreSQL store backend (psycopg 3 with a connection pool)."""

from fhirgate.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
