"""Tests of write_practice: batches go through FhirStore.write and the summary counts what was written."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from fhirgate.demo.generator import generate_practice, write_practice

TODAY = dt.date(2025, 6, 30)


class FakeStore:
    """A trivial in-memory stand-in for FhirStore.write (the only method write_practice uses)."""

    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.fail_after: int | None = None

    def write(
        self, resources: Sequence[dict[str, Any]], *, index: Any = None, expect: Any = None, precondition: Any = None
    ) -> list[Any]:
        if self.fail_after is not None and len(self.batches) >= self.fail_after:
            raise RuntimeError("disk full")
        self.batches.append(list(resources))
        return []


def test_write_practice_writes_every_batch_and_counts() -> None:
    store = FakeStore()
    summary = write_practice(store, patients=30, seed=4, today=TODAY)
    written = [r for b in store.batches for r in b]
    expected = [r for b in generate_practice(patients=30, seed=4, today=TODAY) for r in b]
    assert written == expected
    assert summary.counts == dict(sorted(Counter(r["resourceType"] for r in written).items()))
    assert summary.total == len(written)
    assert summary.counts["Patient"] == 30
    assert summary.security_labels.get("R", 0) > 0
    assert summary.injection_note_ids
    assert summary.optout_patient_ids
    assert summary.today == TODAY
    assert summary.seed == 4


def test_write_practice_propagates_store_failure() -> None:
    store = FakeStore()
    store.fail_after = 1
    with pytest.raises(RuntimeError):
        write_practice(store, patients=5, seed=1, today=TODAY)


def test_write_practice_with_progress_bar(capsys: pytest.CaptureFixture[str]) -> None:
    store = FakeStore()
    summary = write_practice(store, patients=3, seed=1, today=TODAY, progress=True)
    assert summary.counts["Patient"] == 3
    assert capsys.readouterr().out == ""  # progress goes to stderr, never stdout


def test_write_practice_into_sqlite_store(tmp_path: Path) -> None:
    sqlite_store = pytest.importorskip("fhirgate.store.sqlite.store")
    store = sqlite_store.SqliteStore(tmp_path / "store.db")
    try:
        summary = write_practice(store, patients=15, seed=2, today=TODAY)
        assert store.counts() == summary.counts
        patient = store.read("Patient", "pat-000000")
        assert patient is not None
        assert patient.body["id"] == "pat-000000"
    finally:
        store.close()
