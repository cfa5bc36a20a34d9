"""Materialized analytics views: the built-in practice views and user views as tables beside the store."""
