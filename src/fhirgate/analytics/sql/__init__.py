"""Read-only SQL over the materialized practice views, confined by the SQLite engine to what a principal may see."""
