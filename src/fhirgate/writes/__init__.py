"""Safe writes with I/O: the signed proposal store and confirmation tokens (docs/writes.md)."""
