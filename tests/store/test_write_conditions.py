"""Contract: conditional writes (issue 7) — version pins, in-transaction preconditions, racing writers.

FHIR R4 §3.1.0.5.3 (version-aware update, If-Match / If-None-Match: *): a write names the version it read
and is refused with Conflict, writing nothing, when another version is current.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from fhirgate.core.fhir.search import parse_search
from fhirgate.errors import Conflict, FhirgateError, InvalidInput
from fhirgate.store.contract import FhirStore, ResourceChange, StoredResource
from fhirgate.store.sqlite import SqliteStore

RACES = 10


def appointment(id_: str, status: str = "booked", slot: str = "s1", patient: str = "p1") -> dict[str, Any]:
    """A minimal Appointment booking `slot` for `patient`."""
    return {
        "resourceType": "Appointment",
        "id": id_,
        "status": status,
        "slot": [{"reference": f"Slot/{slot}"}],
        "participant": [{"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"}],
    }


def slot(id_: str, status: str = "free") -> dict[str, Any]:
    """A minimal Slot."""
    return {"resourceType": "Slot", "id": id_, "status": status, "schedule": {"reference": "Schedule/sc1"}}


def versions(store: FhirStore, rtype: str, id_: str) -> list[tuple[int, bool]]:
    """(version, deleted) of every stored version, newest first."""
    return [(h.version, h.deleted) for h in store.history(rtype, id_)]


def booked_on(store: FhirStore, slot_id: str) -> int:
    """How many Appointments reference the slot (a search, so it must work inside a precondition)."""
    page = store.search(parse_search("Appointment", [("slot", f"Slot/{slot_id}"), ("_count", "0")]))
    assert page.total is not None
    return page.total


# -- expect: happy paths ---------------------------------------------------------------------------


def test_expect_matching_version_updates_and_keeps_history(store: FhirStore) -> None:
    store.write([appointment("a1")])
    (second,) = store.write([appointment("a1", "arrived")], expect={"Appointment/a1": 1})
    assert second.version == 2
    (third,) = store.write([appointment("a1", "fulfilled")], expect={"Appointment/a1": 2})
    assert third.version == 3
    current = store.read("Appointment", "a1")
    assert current is not None
    assert current.body["status"] == "fulfilled"
    assert current.body["meta"]["versionId"] == "3"
    assert versions(store, "Appointment", "a1") == [(3, False), (2, False), (1, False)]


def test_expect_none_creates_when_absent(store: FhirStore) -> None:
    (created,) = store.write([appointment("a1")], expect={"Appointment/a1": None})
    assert created.version == 1
    assert store.read("Appointment", "a1") is not None


def test_expect_none_accepts_a_deleted_resource(store: FhirStore) -> None:
    store.write([appointment("a1")])
    assert store.delete("Appointment", "a1") is True
    (again,) = store.write([appointment("a1", "proposed")], expect={"Appointment/a1": None})
    assert again.version == 3
    assert versions(store, "Appointment", "a1") == [(3, False), (2, True), (1, False)]


def test_expect_pins_a_resource_not_written(store: FhirStore) -> None:
    store.write([slot("s1")])
    (a1,) = store.write([appointment("a1")], expect={"Slot/s1": 1, "Appointment/a1": None})
    assert a1.version == 1
    slot_now = store.read("Slot", "s1")
    assert slot_now is not None
    assert slot_now.version == 1  # pinned, not written


def test_expect_without_resources_only_checks(store: FhirStore) -> None:
    store.write([slot("s1")])
    assert store.write([], expect={"Slot/s1": 1}) == []
    with pytest.raises(Conflict):
        store.write([], expect={"Slot/s1": 2})
    assert versions(store, "Slot", "s1") == [(1, False)]


# -- expect: conflicts write nothing ---------------------------------------------------------------


def test_stale_expect_conflicts_and_writes_nothing(store: FhirStore) -> None:
    store.write([appointment("a1"), slot("s1")])
    store.write([appointment("a1", "arrived")])  # someone else's update: version 2
    before = store.history("Appointment", "a1")
    batch = [slot("s1", "busy"), appointment("a1", "cancelled"), appointment("a2")]
    with pytest.raises(Conflict) as caught:
        store.write(batch, expect={"Appointment/a1": 1})
    assert str(caught.value) == (
        "Appointment/a1 changed since it was read (version 2 is stored; the write expected version 1)"
    )
    assert store.history("Appointment", "a1") == before
    assert versions(store, "Slot", "s1") == [(1, False)]
    slot_now = store.read("Slot", "s1")
    assert slot_now is not None
    assert slot_now.body["status"] == "free"
    assert store.read("Appointment", "a2") is None
    assert store.history("Appointment", "a2") == []
    assert store.counts() == {"Appointment": 1, "Slot": 1}
    assert [m.id for m in store.search(parse_search("Appointment", [("status", "cancelled")])).matches] == []
    # The store is still usable after the rollback.
    (ok,) = store.write([appointment("a1", "cancelled")], expect={"Appointment/a1": 2})
    assert ok.version == 3


def test_expect_none_on_existing_conflicts(store: FhirStore) -> None:
    store.write([appointment("a1")])
    with pytest.raises(Conflict, match=r"^Appointment/a1 already exists \(version 1\)$"):
        store.write([appointment("a1", "proposed"), appointment("a2")], expect={"Appointment/a1": None})
    assert store.read("Appointment", "a2") is None
    assert versions(store, "Appointment", "a1") == [(1, False)]


def test_pinned_resource_changed_or_gone_conflicts(store: FhirStore) -> None:
    store.write([slot("s1"), slot("s9")])
    store.write([slot("s1", "busy")])
    with pytest.raises(Conflict, match=r"^Slot/s1 changed since it was read \(version 2 is stored"):
        store.write([appointment("a1")], expect={"Slot/s1": 1})
    store.delete("Slot", "s9")
    with pytest.raises(Conflict, match=r"^Slot/s9 no longer exists"):
        store.write([appointment("a2", slot="s9")], expect={"Slot/s9": 1})
    with pytest.raises(Conflict, match=r"^Slot/never no longer exists"):
        store.write([appointment("a3", slot="never")], expect={"Slot/never": 1})
    assert store.counts() == {"Slot": 1}


@pytest.mark.parametrize(
    "expect",
    [
        {"Appointment": 1},
        {"appointment/a1": 1},
        {"Appointment/has space": 1},
        {"Appointment/a1/_history/1": 1},
        {"Appointment/a1": 0},
        {"Appointment/a1": True},
        {"Appointment/a1": "1"},
        {"Appointment/a1": 1.0},
    ],
)
def test_malformed_expect_is_invalid_input(store: FhirStore, expect: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as caught:
        store.write([appointment("a1")], expect=expect)
    assert caught.value.param == "expect"
    assert store.read("Appointment", "a1") is None


# -- precondition ----------------------------------------------------------------------------------


def test_precondition_conflict_writes_nothing(store: FhirStore) -> None:
    store.write([appointment("a1")])
    refusal = Conflict("Slot/s1 is already booked")

    def refuse() -> None:
        raise refusal

    with pytest.raises(Conflict) as caught:
        store.write([appointment("a2"), slot("s1", "busy")], precondition=refuse)
    assert caught.value is refusal  # propagated unchanged
    assert store.read("Appointment", "a2") is None
    assert store.read("Slot", "s1") is None
    assert store.counts() == {"Appointment": 1}


def test_precondition_any_exception_propagates_and_writes_nothing(store: FhirStore) -> None:
    class Boom(Exception):
        pass

    def boom() -> None:
        raise Boom

    with pytest.raises(Boom):
        store.write([appointment("a1")], precondition=boom)
    assert store.read("Appointment", "a1") is None
    store.write([appointment("a1")])  # still usable


def test_precondition_runs_after_expect(store: FhirStore) -> None:
    store.write([appointment("a1")])
    calls: list[str] = []
    with pytest.raises(Conflict):
        store.write([appointment("a1")], expect={"Appointment/a1": None}, precondition=lambda: calls.append("x"))
    assert calls == []
    store.write([appointment("a1", "arrived")], expect={"Appointment/a1": 1}, precondition=lambda: calls.append("x"))
    assert calls == ["x"]


def test_precondition_reads_and_searches_the_store(store: FhirStore) -> None:
    store.write([slot("s1"), appointment("a1", slot="s1"), appointment("a2", slot="s1")])
    seen: dict[str, Any] = {}

    def look() -> None:
        seen["booked"] = booked_on(store, "s1")
        found = store.read("Slot", "s1")
        seen["slot"] = None if found is None else found.version
        seen["ids"] = store.find_ids("Appointment", {"status": "booked"})

    store.write([appointment("a3", slot="s2")], precondition=look)
    assert seen == {"booked": 2, "slot": 1, "ids": ["a1", "a2"]}

    def at_most_two() -> None:
        if booked_on(store, "s1") >= 2:
            raise Conflict("Slot/s1 is fully booked")

    with pytest.raises(Conflict, match="fully booked"):
        store.write([appointment("a4", slot="s1")], precondition=at_most_two)
    assert store.read("Appointment", "a4") is None


def test_precondition_reads_do_not_deadlock(store: FhirStore) -> None:
    """Reads inside the transaction run on its thread and connection, so the write lock never blocks them."""
    store.write([slot("s1")])
    done = threading.Event()
    errors: list[BaseException] = []

    def look() -> None:
        store.read("Slot", "s1")
        booked_on(store, "s1")
        store.counts()
        list(store.iter_type("Slot"))

    def run() -> None:
        try:
            store.write([appointment("a1")], precondition=look)
            done.set()
        except BaseException as exc:  # reported below
            errors.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert errors == []
    assert done.is_set(), "write with a reading precondition did not finish (deadlock?)"


def test_precondition_that_writes_fails_and_writes_nothing(store: FhirStore) -> None:
    def sneaky() -> None:
        store.write([slot("s9")])

    with pytest.raises(FhirgateError):
        store.write([appointment("a1")], precondition=sneaky)
    assert store.read("Slot", "s9") is None
    assert store.read("Appointment", "a1") is None


# -- races -----------------------------------------------------------------------------------------


def race(n: int, prepare: Callable[[int], Any], attempt: Callable[[int, Any], Any]) -> list[Any]:
    """On n threads: `prepare(i)`, then all wait for each other, then `attempt(i, prepared)` together.

    Each result is the attempt's return value or the exception it raised.
    """
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        try:
            prepared = prepare(i)
            barrier.wait(timeout=10)
            results[i] = attempt(i, prepared)
        except Exception as exc:  # collected for the assertions
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


@pytest.mark.parametrize("round_", range(RACES))
def test_two_writers_of_the_same_version_one_wins(store: FhirStore, round_: int) -> None:
    store.write([appointment("a1")])

    def read(i: int) -> int:
        mine = store.read("Appointment", "a1")  # both threads read version 1 before either writes
        assert mine is not None
        return mine.version

    def update(i: int, version: int) -> list[StoredResource]:
        return store.write([appointment("a1", f"status-{i}")], expect={"Appointment/a1": version})

    results = race(2, read, update)
    assert [r for r in results if not isinstance(r, list | Conflict)] == []
    wins = [r for r in results if isinstance(r, list)]
    losses = [r for r in results if isinstance(r, Conflict)]
    assert len(wins) == 1, results
    assert len(losses) == 1, results
    assert "changed since it was read (version 2 is stored; the write expected version 1)" in str(losses[0])
    assert versions(store, "Appointment", "a1") == [(2, False), (1, False)]


@pytest.mark.parametrize("round_", range(RACES))
def test_two_bookings_of_one_slot_one_wins(store: FhirStore, round_: int) -> None:
    """A precondition that searches is race-free: the second booking sees the first one committed."""
    store.write([slot("s1")])

    def book(i: int, _: None) -> list[StoredResource]:
        def free() -> None:
            if booked_on(store, "s1"):
                raise Conflict("Slot/s1 is already booked")

        return store.write([appointment(f"a{i}", slot="s1")], expect={f"Appointment/a{i}": None}, precondition=free)

    results = race(2, lambda i: None, book)
    assert sum(isinstance(r, list) for r in results) == 1, results
    assert sum(isinstance(r, Conflict) for r in results) == 1, results
    assert booked_on(store, "s1") == 1


# -- delete with expect_version --------------------------------------------------------------------


def test_delete_with_stale_version_conflicts(store: FhirStore) -> None:
    store.write([appointment("a1")])
    store.write([appointment("a1", "arrived")])
    with pytest.raises(Conflict, match=r"^Appointment/a1 changed since it was read \(version 2 is stored"):
        store.delete("Appointment", "a1", expect_version=1)
    current = store.read("Appointment", "a1")
    assert current is not None
    assert current.version == 2
    assert store.delete("Appointment", "a1", expect_version=2) is True
    assert store.read("Appointment", "a1") is None
    assert versions(store, "Appointment", "a1") == [(3, True), (2, False), (1, False)]


def test_delete_with_version_of_absent_or_deleted_conflicts(store: FhirStore) -> None:
    with pytest.raises(Conflict, match=r"^Appointment/never no longer exists"):
        store.delete("Appointment", "never", expect_version=1)
    store.write([appointment("a1")])
    store.delete("Appointment", "a1")
    with pytest.raises(Conflict, match=r"^Appointment/a1 no longer exists"):
        store.delete("Appointment", "a1", expect_version=1)
    assert store.delete("Appointment", "a1") is False  # without a version: unchanged behaviour
    assert versions(store, "Appointment", "a1") == [(2, True), (1, False)]


@pytest.mark.parametrize("bad", [0, -1, True, "1"])
def test_delete_with_malformed_version_is_invalid_input(store: FhirStore, bad: Any) -> None:
    store.write([appointment("a1")])
    with pytest.raises(InvalidInput):
        store.delete("Appointment", "a1", expect_version=bad)
    assert store.read("Appointment", "a1") is not None


# -- SQLite: derived tables roll back with the refused write ----------------------------------------


class CountingDerived:
    """A DerivedTables that mirrors every written Appointment into a table, inside the write transaction."""

    def load(self, conn: Any) -> bool:
        return True

    def prepare(self, conn: Any) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS derived_seen(rid INTEGER, type TEXT, status TEXT)")

    def watched(self, conn: Any) -> frozenset[str]:
        return frozenset({"Appointment"})

    def apply(self, conn: Any, changes: Sequence[ResourceChange]) -> None:
        conn.executemany(
            "INSERT INTO derived_seen VALUES (?, ?, ?)",
            [(rid, rtype, None if body is None else body.get("status")) for rid, rtype, body in changes],
        )

    def rebuild(self, conn: Any) -> object:
        return None


@pytest.mark.parametrize("key", [None, "test-key-1"], ids=["sqlite", "sqlite-encrypted"])
def test_sqlite_refused_write_leaves_derived_tables_unchanged(tmp_path: Path, key: str | None) -> None:
    sqlite = SqliteStore(tmp_path / "store.db", key=key, derived=CountingDerived())
    try:

        def seen() -> list[tuple[Any, ...]]:
            return [tuple(r) for r in sqlite.run_write(lambda c: c.execute("SELECT * FROM derived_seen").fetchall())]

        sqlite.write([appointment("a1")])
        assert [s[2] for s in seen()] == ["booked"]
        with pytest.raises(Conflict):
            sqlite.write([appointment("a1", "cancelled")], expect={"Appointment/a1": 2})

        def refuse() -> None:
            raise Conflict("no")

        with pytest.raises(Conflict):
            sqlite.write([appointment("a2")], precondition=refuse)
        with pytest.raises(Conflict):
            sqlite.delete("Appointment", "a1", expect_version=2)
        assert [s[2] for s in seen()] == ["booked"]
        sqlite.write([appointment("a1", "cancelled")], expect={"Appointment/a1": 1})
        assert [s[2] for s in seen()] == ["booked", "cancelled"]
    finally:
        sqlite.close()
