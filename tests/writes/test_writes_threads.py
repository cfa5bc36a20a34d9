"""The proposal store is shared by the server's worker threads: concurrent use must neither fail nor mix rows."""

from __future__ import annotations

import threading
from pathlib import Path

from writes_helpers import make_proposal

from fhirgate.config import DataDir
from fhirgate.writes.approvals import open_proposals


def test_concurrent_creates_gets_and_decisions(tmp_path: Path) -> None:
    store = open_proposals(DataDir(tmp_path / "data"))
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(n: int) -> None:
        try:
            barrier.wait()
            for k in range(15):
                pid = f"prop-t{n}-{k}"
                created, _ = store.create(make_proposal(pid=pid, idem=f"idem-{n}-{k}", now=store.now()))
                assert store.get(pid).id == pid
                store.list(limit=5)
                store.decide(created.id, "someone else", k % 2 == 0, None if k % 2 == 0 else "no")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert store.verify() == (120, [])
        statuses = {p.status for p in store.list(limit=1000)}
        assert statuses == {"approved", "rejected"}
    finally:
        store.close()
