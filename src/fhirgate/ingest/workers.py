"""Worker processes that prepare whole files ahead of the loader, so its main process only writes SQLite.

For a Bundle, a worker does everything but the write: parse, assign ids, rewrite urn:uuid references,
resolve conditional references (through its own read connection to the store), validate in the chosen
mode, extract index rows and serialize bodies; the result crosses the process boundary as one orjson
payload (ingest.payload). Anything unusual (an invalid entry, an unresolved or ambiguous conditional
reference, a DELETE, an ifNoneExist match, a failed worker) makes the worker decline, and the main
process loads that file itself, exactly as without workers, so messages and atomicity are unchanged.
For NDJSON and single-resource files in `full` mode a worker returns only the model verdicts, keyed by
NDJSON line number or 0 for a single-resource file.

Conditional references resolve against what is committed when the worker prepares the file; the loader
submits patient files only after the shared-entity files (Synthea hospital/practitioner information)
are written. A reference that does not resolve yet is retried in the main process after every earlier
file is written. As with the loader's own cache, a unique match is trusted for the whole load.
"""

from __future__ import annotations

import gc
import multiprocessing
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from fhirgate.core.fhir.bundle import prepare_bundle
from fhirgate.core.fhir.validate import ValidationMode, check_model, supported_types, validate_resource
from fhirgate.errors import FhirgateError, ValidationFailed
from fhirgate.ingest.payload import encode, encode_rows, prepare_resource
from fhirgate.ingest.sources import is_ndjson
from fhirgate.store.factory import StoreAddress

# key -> (message, location)
ModelVerdicts = dict[int, tuple[str, str | None]]


def _check(resource: Any, key: int, out: ModelVerdicts) -> None:
    if not isinstance(resource, dict):
        return
    rtype = resource.get("resourceType")
    if rtype not in supported_types():
        return
    try:
        check_model(resource, rtype)
    except ValidationFailed as exc:
        text = exc.message[len(exc.location) + 2 :] if exc.location else exc.message
        out[key] = (text, exc.location)


def model_verdicts(path: str) -> ModelVerdicts:
    """Model errors for every resource in one file; unreadable or malformed files give no verdicts."""
    out: ModelVerdicts = {}
    try:
        data = Path(path).read_bytes()
        if is_ndjson(Path(path)):
            for number, raw in enumerate(data.split(b"\n"), start=1):
                if raw.strip():
                    try:
                        _check(orjson.loads(raw), number, out)
                    except orjson.JSONDecodeError:
                        continue
            return out
        doc = orjson.loads(data)
    except (OSError, orjson.JSONDecodeError):
        return out  # the main process reports these
    if isinstance(doc, dict) and doc.get("resourceType") == "Bundle":
        entries = doc.get("entry")
        if isinstance(entries, list):
            for index, entry in enumerate(entries):
                if isinstance(entry, dict):
                    _check(entry.get("resource"), index, out)
    else:
        _check(doc, 0, out)
    return out


@dataclass(frozen=True, slots=True)
class FileResult:
    """What a worker made of one file: a prepared bundle payload, or model verdicts, or neither (load inline)."""

    payload: bytes | None = None
    verdicts: ModelVerdicts | None = None


# Per worker process: validation mode, read-only store for conditional references, unique-hit cache.
_STATE: dict[str, Any] = {}


def _init_worker(mode: ValidationMode, prepare: bool, store: StoreAddress | None) -> None:
    _STATE["mode"] = mode
    _STATE["prepare"] = prepare
    _STATE["store"] = store.open() if store is not None else None
    _STATE["resolved"] = {}


def warm_up() -> None:
    """Run in a worker before any file: build the per-type extraction plans (and, in full mode, load the
    pydantic model classes), so that work overlaps the main process loading the shared-entity files.
    """
    from fhirgate.core.fhir.extract import extract

    for rtype in sorted(supported_types()):
        try:
            extract({"resourceType": rtype, "id": "warm-up"})
            if _STATE.get("mode") == "full":
                check_model({"resourceType": rtype, "id": "warm-up"}, rtype)
        except FhirgateError:
            continue  # a minimal resource may be invalid; the classes and plans are loaded all the same


def _resolve(resource_type: str, params: Mapping[str, str]) -> list[str]:
    store = _STATE.get("store")
    if store is None:
        raise ValidationFailed("conditional references cannot be resolved in a worker", location="worker")
    key = (resource_type, tuple(sorted(params.items())))
    cache: dict[tuple[str, tuple[tuple[str, str], ...]], str] = _STATE["resolved"]
    hit = cache.get(key)
    if hit is not None:
        return [hit]
    ids: list[str] = store.find_ids(resource_type, params)
    if len(ids) == 1:
        cache[key] = ids[0]
    return ids


# Rowids reserved per file when workers build final rows (a larger bundle is sent as PreparedResources).
RID_BLOCK = 1 << 20
# (first rowid of this file's block, param ids by type and code), from SqliteStore.row_plan.
RowPlan = tuple[int, dict[str, dict[str, int]]]


def _prepare_bundle_file(doc: dict[str, Any], mode: ValidationMode, plan: RowPlan | None) -> bytes | None:
    """The payload of a bundle with nothing unusual in it, else None (the main process loads it)."""
    supported = supported_types()
    try:
        prepared = prepare_bundle(doc, resolve=_resolve, accept=supported.__contains__)
        if prepared.errors:
            return None
        items = []
        for entry in prepared.entries:
            if entry.resource is None or entry.exists or entry.method == "DELETE":
                return None
            validate_resource(entry.resource, mode=mode, references=entry.references)
            items.append(prepare_resource(entry.resource, entry.resource_type, entry.id))
    except FhirgateError:
        return None
    if plan is not None and len(items) <= RID_BLOCK:
        try:
            return encode_rows(items, prepared.skipped, plan[0], plan[1])
        except KeyError:
            pass  # a param without an id: the writer assigns it
    return encode(items, prepared.skipped)


def process_file(path: str, plan: RowPlan | None = None) -> FileResult:
    """Run in a worker: prepare one file (see the module docstring). Never raises for bad input."""
    mode: ValidationMode = _STATE.get("mode", "fast")
    enabled = gc.isenabled()
    gc.disable()  # parsing builds many objects that all live until the file is done: GC passes are waste
    try:
        if is_ndjson(Path(path)):
            return FileResult(verdicts=model_verdicts(path) if mode == "full" else None)
        try:
            doc = orjson.loads(Path(path).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return FileResult()  # the main process reports these
        if isinstance(doc, dict) and doc.get("resourceType") == "Bundle":
            if _STATE.get("prepare"):
                return FileResult(payload=_prepare_bundle_file(doc, mode, plan))
            return FileResult(verdicts=model_verdicts(path) if mode == "full" else None)
        if mode == "full":
            out: ModelVerdicts = {}
            _check(doc, 0, out)
            return FileResult(verdicts=out)
        return FileResult()
    finally:
        if enabled:
            gc.enable()


class FilePool:
    """Worker processes preparing files ahead of the loader, at most `ahead` files in flight.

    prepare=False (a store without write_prepared): workers return only full-mode model verdicts.
    """

    def __init__(
        self,
        workers: int,
        mode: ValidationMode,
        *,
        prepare: bool = True,
        store: StoreAddress | None = None,
        ahead: int | None = None,
    ) -> None:
        # forkserver: children start clean, never inheriting the store's SQLite handles or threads.
        ctx = multiprocessing.get_context("forkserver")
        self._pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(mode, prepare, store),
        )
        self._ahead = ahead if ahead is not None else 2 * workers + 2
        # Start the processes now: they import and warm up while the caller loads the first files.
        for _ in range(workers):
            self._pool.submit(warm_up)
        self._queue: deque[tuple[str, RowPlan | None]] = deque()
        self._futures: dict[str, Future[FileResult]] = {}

    def submit(self, paths: list[Path], plan: RowPlan | None = None) -> None:
        """Queue files in load order; they are handed to workers as earlier results are taken.

        With a plan, file k (in this call's order) gets rowids from plan[0] + k * RID_BLOCK.
        """
        for k, p in enumerate(paths):
            file_plan = (plan[0] + k * RID_BLOCK, plan[1]) if plan is not None else None
            self._queue.append((str(p), file_plan))
        self._top_up()

    def _top_up(self) -> None:
        try:
            while self._queue and len(self._futures) < self._ahead:
                p, plan = self._queue.popleft()
                self._futures[p] = self._pool.submit(process_file, p, plan)
        except (BrokenProcessPool, RuntimeError):
            self._queue.clear()  # a dead pool: the loader loads the remaining files itself

    def result(self, path: Path) -> FileResult | None:
        """A submitted file's result (blocking); None when not submitted or a worker died."""
        fut = self._futures.pop(str(path), None)
        self._top_up()
        if fut is None:
            return None
        try:
            return fut.result()
        except Exception:  # a dead pool or a worker bug: this process loads the file as usual
            return None

    def close(self) -> None:
        """Stop the workers, dropping queued files."""
        self._queue.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)
