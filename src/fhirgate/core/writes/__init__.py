"""Pure logic of safe writes: proposals, their field-level diffs and risk scoring (docs/writes.md)."""
