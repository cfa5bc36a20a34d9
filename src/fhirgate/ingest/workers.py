"""Running the slow part of `full` validation (fhir.resources pydantic models) in worker processes.

The loader's main process parses, rewrites, checks bindings and writes; a worker re-reads the same file
and returns only the model verdicts, keyed by bundle entry index, NDJSON line number, or 0 for a
single-resource file. Only small error tuples cross the process boundary (pickling whole resources
costs more than validating them), so on 2 cores full-mode loading runs about twice as fast.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import orjson

from fhirgate.core.fhir.validate import check_model, supported_types
from fhirgate.errors import ValidationFailed
from fhirgate.ingest.sources import is_ndjson

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


class ModelPool:
    """A process pool that validates files ahead of the loader; `verdicts(path)` waits for one file."""

    def __init__(self, workers: int) -> None:
        # forkserver: children start clean, never inheriting the store's SQLite handles or threads.
        ctx = multiprocessing.get_context("forkserver")
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
        self._futures: dict[str, Future[ModelVerdicts]] = {}

    def submit(self, paths: list[Path]) -> None:
        """Queue files in load order."""
        for p in paths:
            self._futures[str(p)] = self._pool.submit(model_verdicts, str(p))

    def verdicts(self, path: Path) -> ModelVerdicts | None:
        """The model verdicts for a submitted file (blocking); None when not submitted or a worker died."""
        fut = self._futures.pop(str(path), None)
        if fut is None:
            return None
        try:
            return fut.result()
        except (BrokenProcessPool, OSError):
            return None  # the caller validates this file in-process instead

    def discard(self, path: Path) -> None:
        """Forget a file's verdicts (cancelled when not started yet)."""
        fut = self._futures.pop(str(path), None)
        if fut is not None:
            fut.cancel()

    def close(self) -> None:
        """Stop the workers, dropping queued files."""
        self._pool.shutdown(wait=True, cancel_futures=True)
