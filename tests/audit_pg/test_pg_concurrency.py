"""Many worker processes (and threads in each) append to one PostgreSQL audit chain: no fork, no gap, all verify."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor

from audit_pg_support import CHAIN_KEY, POSTGRES_URL, append_worker, make_record

from fhirgate.audit.pg_log import PgAuditLog
from fhirgate.audit.verify import verify

PROCESSES = 4
THREADS = 2
PER_THREAD = 40
MAIN_THREADS = 3


def test_processes_and_threads_share_one_chain(pg_log: PgAuditLog, schema: str) -> None:
    pg_log.append(make_record(0, request_id="main-first"))  # the chain exists before the workers start
    ctx = multiprocessing.get_context("spawn")
    main_seqs: list[int] = []
    lock = threading.Lock()

    def main_thread(t: int) -> None:
        for i in range(PER_THREAD):
            seq = pg_log.append(make_record(i, request_id=f"main-t{t}-{i}"))
            with lock:
                main_seqs.append(seq)

    with ProcessPoolExecutor(max_workers=PROCESSES, mp_context=ctx) as pool:
        futures = [pool.submit(append_worker, schema, w, THREADS, PER_THREAD) for w in range(PROCESSES)]
        threads = [threading.Thread(target=main_thread, args=(t,)) for t in range(MAIN_THREADS)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        worker_seqs = [seq for f in futures for seq in f.result(timeout=120)]

    total = 1 + PROCESSES * THREADS * PER_THREAD + MAIN_THREADS * PER_THREAD
    returned = sorted([1, *main_seqs, *worker_seqs])
    assert returned == list(range(1, total + 1))  # every append got its own seq, none skipped
    entries = list(pg_log.iter())
    assert [e.seq for e in entries] == list(range(1, total + 1))
    assert [e.prev_hash for e in entries[1:]] == [e.hash for e in entries[:-1]]  # one chain, no fork
    assert len({e.record.request_id for e in entries}) == total
    report = verify(pg_log)
    assert report.ok, report.problems[:5]
    assert (report.checked, report.anchor_seq) == (total, total)


def test_workers_opening_a_fresh_schema_together_create_one_chain(schema: str) -> None:
    opened: list[PgAuditLog] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def open_one() -> None:
        barrier.wait()
        log = PgAuditLog(POSTGRES_URL, schema=schema, chain_key=CHAIN_KEY, pool_size=1)
        with lock:
            opened.append(log)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    try:
        assert len(opened) == 4
        assert len({log.chain_id for log in opened}) == 1
        assert [log.append(make_record(i)) for i, log in enumerate(opened)] == [1, 2, 3, 4]
        assert verify(opened[0]).ok
    finally:
        for log in opened:
            log.close()
