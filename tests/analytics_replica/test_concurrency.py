"""Two replicas on one folder (two worker processes on one host) catching up at once: each change applied once."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from replica_support import PgPractice, appointment, patient, pg_connect, pg_live_ids, practitioner, replica_rows

from fhirgate.analytics.views.replica import POSITION, ViewReplica
from fhirgate.location.backends import open_view_replica
from fhirgate.store.postgres.changes import PgChangeFeed
from pg_server import location_url, needs_postgres

pytestmark = needs_postgres

WORKER = r"""
import json, sys, time
from pathlib import Path
from fhirgate.location import open_location
from fhirgate.location.backends import open_view_replica
from fhirgate.store.factory import open_store

url, sync, name = sys.argv[1:4]
sync = Path(sync)
location = open_location(url)
store = open_store(location, create=False)
replica = open_view_replica(location, store)
(sync / f"ready-{name}").touch()
deadline = time.monotonic() + 60
while not (sync / "go").exists():
    assert time.monotonic() < deadline
    time.sleep(0.002)
first = replica.catch_up()
later = 0
while not (sync / "stop").exists():
    assert time.monotonic() < deadline
    later += replica.catch_up()
later += replica.catch_up()
print(json.dumps({"first": first, "later": later, "position": replica._position}))
replica.close()
store.close()
"""

VIEWS = {"Practitioner": "practitioner", "Patient": "patient", "Appointment": "appointment"}


def _wait_for(paths: list[Path], procs: list[subprocess.Popen[str]]) -> None:
    deadline = time.monotonic() + 60
    while not all(p.exists() for p in paths):
        for proc in procs:
            assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "workers did not start"
        time.sleep(0.01)


def _phase_one(pg: PgPractice) -> int:
    """A batch of distinct changes to watched types; returns how many resources changed."""
    pg.store.write(
        [appointment(f"ap-batch-{i}", f"pt-{1 + i % 4}", f"pr-{1 + i % 3}", day=1 + i % 28) for i in range(40)]
    )
    pg.store.write([practitioner("pr-1", "BatchRenamed")])
    assert pg.store.delete("Appointment", "ap-pt-3-0")
    pg.store.write([patient("pt-9")])
    return 40 + 1 + 1 + 1


def _phase_two(pg: PgPractice) -> None:
    """Many small transactions while the workers catch up in a loop (the same resources changing repeatedly)."""
    for i in range(30):
        pg.store.write([appointment(f"ap-live-{i}", "pt-2", "pr-2", day=1 + i % 28), practitioner("pr-2", f"Grey{i}")])
        if i % 3 == 0:
            assert pg.store.delete("Appointment", f"ap-batch-{i}")
        if i % 5 == 0:
            assert pg.store.delete("Appointment", f"ap-live-{i}")
            pg.store.write([appointment(f"ap-live-{i}", "pt-1", "pr-3", status="cancelled")])


def _check_replica_matches_postgres(pg: PgPractice, path: Path, key: str | None) -> None:
    for rtype, view in VIEWS.items():
        ids = [r[0] for r in replica_rows(path, key, f"SELECT id FROM {view}")]
        assert len(ids) == len(set(ids)), f"duplicate rows in {view}"
        assert set(ids) == pg_live_ids(pg.schema, rtype), view
    with pg_connect(pg.schema) as conn:
        expected = {
            str(i): str(f)
            for i, f in conn.execute(
                "SELECT id, body->'name'->0->>'family' FROM resources WHERE type = 'Practitioner' AND NOT deleted"
            ).fetchall()
        }
        statuses = {
            str(i): str(s)
            for i, s in conn.execute(
                "SELECT id, body->>'status' FROM resources WHERE type = 'Appointment' AND NOT deleted"
            ).fetchall()
        }
    assert dict(replica_rows(path, key, "SELECT id, family FROM practitioner")) == expected
    assert dict(replica_rows(path, key, "SELECT id, status FROM appointment")) == statuses


def test_two_processes_catching_up_at_once_apply_every_change_exactly_once(pg: PgPractice, tmp_path: Path) -> None:
    first = open_view_replica(pg.location, pg.store)  # built once, as by the first worker to start
    path, key = first.path, first.key
    first.close()
    url = location_url(pg.schema)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, str(tmp_path), name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    try:
        _wait_for([tmp_path / "ready-a", tmp_path / "ready-b"], procs)
        changed = _phase_one(pg)
        (tmp_path / "go").touch()
        time.sleep(0.2)
        _phase_two(pg)
        (tmp_path / "stop").touch()
        outputs: list[dict[str, Any]] = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            outputs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    # Phase one: the batch was complete before either caught up, so one of them applied it all, the other nothing.
    assert sorted(o["first"] for o in outputs) == [0, changed], outputs
    assert all(o["later"] >= 0 for o in outputs)
    _check_replica_matches_postgres(pg, path, key)
    # Positions: the stored one is the last catch-up's, and neither worker's position has anything after it.
    stored = replica_rows(path, key, f"SELECT value FROM store_meta WHERE key = '{POSITION}'")
    assert stored and stored[0][0] in {o["position"] for o in outputs}
    url_, schema = pg.store.connection_args()  # type: ignore[attr-defined]
    feed = PgChangeFeed(url_, schema)
    try:
        for o in outputs:
            assert feed.unchanged_until(o["position"], None) is not None, o
    finally:
        feed.close()


def test_two_replicas_in_threads_converge(pg: PgPractice) -> None:
    a = open_view_replica(pg.location, pg.store)
    b = open_view_replica(pg.location, pg.store)
    errors: list[BaseException] = []
    applied: list[int] = []
    stop = threading.Event()

    def loop(replica: ViewReplica) -> None:
        try:
            n = 0
            while not stop.is_set():
                n += replica.catch_up()
            applied.append(n + replica.catch_up())
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=loop, args=(r,)) for r in (a, b)]
    try:
        for t in threads:
            t.start()
        _phase_one(pg)
        _phase_two(pg)
        stop.set()
        for t in threads:
            t.join(60)
        assert not errors, errors
        assert sum(applied) >= 43
        _check_replica_matches_postgres(pg, a.path, a.key)
    finally:
        stop.set()
        a.close()
        b.close()
