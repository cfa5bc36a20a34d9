"""Loading FHIR JSON/NDJSON files and folders into a FhirStore, validating every resource at the boundary.

Units of atomicity:
  * a transaction Bundle is all-or-nothing: one bad entry (invalid resource, unresolvable conditional
    reference, dangling urn:uuid) rejects the whole bundle, nothing of it is stored, and loading goes
    on with the next file (FHIR R4 §3.1.0.11.2);
  * a batch/collection/searchset Bundle is per entry: bad entries are rejected, the others stored;
  * an NDJSON file is per line (FHIR Bulk Data: each line is an independent resource): a bad line is
    rejected by file and line number, the other lines are stored;
  * a JSON file holding one resource is one unit.
Entries of resource types fhirgate does not store (e.g. Synthea's Device, SupplyDelivery) are skipped
inside bundles and counted in the summary; a standalone resource of such a type is rejected.

Speed (figures in docs/benchmarks.md, "Ingest"):
  * with a store that accepts prepared resources (SqliteStore), every body is serialized once and its
    index rows are extracted here, not re-walked by the store;
  * with workers, bundles are prepared in other processes (ingest.workers) and this process only
    writes; a file a worker declines is loaded here as usual, so results do not depend on workers;
  * into an empty store, the load runs in the store's initial-load mode (indexes built at the end, no
    fsync until then, durable when load_paths returns);
  * Python's cyclic GC is paused during a load (reference counting still frees everything).
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fhirgate.core.fhir.bundle import PreparedBundle, new_id, prepare_bundle
from fhirgate.core.fhir.validate import ValidationMode, supported_types, validate_resource
from fhirgate.errors import FhirgateError, InvalidInput, ValidationFailed
from fhirgate.ingest.payload import decode, prepare_resource
from fhirgate.ingest.report import EventHandler, LoadEvent, LoadSummary, Rejection, progress_handler
from fhirgate.ingest.sources import FIRST_PREFIXES, discover, is_ndjson, iter_ndjson, parse_json, read_bytes
from fhirgate.ingest.workers import FilePool, FileResult, ModelVerdicts
from fhirgate.store.contract import FhirStore, PreparedWriter
from fhirgate.store.factory import store_address

# Standalone resources (single-resource files, NDJSON lines) are written in batches of this size.
BATCH_SIZE = 2000
# Below this many bytes a worker pool costs more to start than it saves.
POOL_MIN_BYTES = 4_000_000


class Loader:
    """One load run: validates units, resolves conditional references, writes, and keeps the summary."""

    def __init__(
        self,
        store: FhirStore,
        *,
        validation: ValidationMode = "full",
        on_event: EventHandler | None = None,
        batch_size: int = BATCH_SIZE,
        pool: FilePool | None = None,
    ) -> None:
        if validation not in ("full", "fast"):
            raise InvalidInput("validation", f"unknown mode {validation!r}", "full, fast")
        self.store = store
        self.mode: ValidationMode = validation
        self.on_event = on_event
        self.batch_size = batch_size
        self.summary = LoadSummary(validation=validation)
        # With a pool, workers prepare files ahead (or, for NDJSON in full mode, run the model checks).
        self.pool = pool
        # Stores that accept prepared resources get bodies serialized once and rows extracted here.
        self._prepared = store if isinstance(store, PreparedWriter) else None
        self._local_mode: ValidationMode = validation
        self._verdicts: ModelVerdicts | None = None
        self._supported = supported_types()
        self._resolved: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
        # Standalone resources waiting to be written: (file, line or None, resource).
        self._pending: list[tuple[str, int | None, dict[str, Any]]] = []
        self._pending_keys: set[tuple[str, str]] = set()

    # -- events -------------------------------------------------------------------------------

    def _emit(self, event: LoadEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def _reject(self, file: str, reason: str, *, entry: int | None = None, line: int | None = None) -> None:
        rejection = Rejection(file, reason, entry, line)
        self.summary.rejected.append(rejection)
        self._emit(LoadEvent("rejected", file, rejection=rejection))

    # -- conditional references -----------------------------------------------------------------

    def resolve(self, resource_type: str, params: Mapping[str, str]) -> list[str]:
        """Ids of stored resources matching the params; unique hits are cached for the whole load."""
        key = (resource_type, tuple(sorted(params.items())))
        hit = self._resolved.get(key)
        if hit is not None:
            return [hit]
        self.flush()  # standalone resources waiting to be written may be the target
        ids = self.store.find_ids(resource_type, params)
        if len(ids) == 1:
            self._resolved[key] = ids[0]
        return ids

    # -- files ----------------------------------------------------------------------------------

    def load_file(self, path: Path) -> int:
        """Load one file; returns the resources stored from it (rejections go to the summary)."""
        name = str(path)
        self.summary.files += 1
        before = self.summary.resources
        result = self.pool.result(path) if self.pool is not None else None
        # Model verdicts from a worker leave only the fast checks to this process.
        self._verdicts = result.verdicts if result is not None else None
        self._local_mode = "fast" if self._verdicts is not None else self.mode
        if result is not None and result.payload is not None:
            size = 0
            with contextlib.suppress(OSError):
                size = path.stat().st_size
            self._emit(LoadEvent("file-start", name, bytes=size))
            if self._load_prepared(name, result):
                self._emit(LoadEvent("file-done", name, resources=self.summary.resources - before))
                return self.summary.resources - before
        try:
            data = read_bytes(path)
            if result is None or result.payload is None:
                self._emit(LoadEvent("file-start", name, bytes=len(data)))
            if is_ndjson(path):
                self._load_ndjson(name, data)
            else:
                doc = parse_json(data)
                if isinstance(doc, dict) and doc.get("resourceType") == "Bundle":
                    self._load_bundle(name, doc)
                else:
                    self._queue(name, None, doc)
        except ValidationFailed as exc:
            self._reject(name, exc.message)
        if self._pending and len(self._pending) >= self.batch_size:
            self.flush()
        stored = self.summary.resources - before
        self._emit(LoadEvent("file-done", name, resources=stored))
        return stored

    def _load_ndjson(self, name: str, data: bytes) -> None:
        seen = False
        for item in iter_ndjson(data):
            seen = True
            if item.error is not None:
                self._reject(name, item.error.message, line=item.line)
                continue
            try:
                self._queue(name, item.line, item.resource)
            except ValidationFailed as exc:
                self._reject(name, exc.message, line=item.line)
        if not seen:
            raise ValidationFailed("file is empty", location="file")

    def _queue(self, name: str, line: int | None, resource: Any) -> None:
        """Validate a standalone resource and queue it for a batched write."""
        if isinstance(resource, dict) and resource.get("id") is None:
            resource["id"] = new_id()
        self._validate(resource, line or 0)
        key = (resource["resourceType"], resource["id"])
        if key in self._pending_keys:
            self.flush()  # the same resource twice: write in order, as two versions
        self._pending.append((name, line, resource))
        self._pending_keys.add(key)
        if len(self._pending) >= self.batch_size:
            self.flush()

    def _validate(self, resource: Any, key: int, references: list[str] | None = None) -> None:
        """Validate in this process (fast checks, or everything without verdicts), then apply model verdicts."""
        validate_resource(resource, mode=self._local_mode, references=references)
        verdict = self._verdicts.get(key) if self._verdicts is not None else None
        if verdict is not None:
            raise ValidationFailed(verdict[0], location=verdict[1])

    def _load_prepared(self, name: str, result: FileResult) -> bool:
        """Write a bundle a worker prepared; False when that fails (the caller then loads the file itself)."""
        if self._prepared is None or result.payload is None:
            return False
        try:
            prepared = decode(result.payload)
        except (ValueError, TypeError, KeyError, IndexError, pickle.UnpicklingError):
            return False
        self.flush()
        write_rows = getattr(self.store, "write_rows", None)
        try:
            if prepared.resources is not None:
                if write_rows is None:
                    return False
                write_rows(prepared.resources, prepared.tables)
            else:
                self._prepared.write_prepared(prepared.items)
        except FhirgateError:
            return False  # the inline path reproduces the failure with the usual messages (or updates)
        self.summary.loaded.update(prepared.types())
        self.summary.skipped.update(prepared.skipped)
        self._emit(LoadEvent("written", "", resources=prepared.count()))
        return True

    def flush(self) -> None:
        """Write the queued standalone resources (one store transaction; one by one if that fails)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        self._pending_keys = set()
        try:
            self._write([r for _, _, r in pending])
        except FhirgateError:
            for name, line, resource in pending:
                try:
                    self._write([resource])
                except FhirgateError as exc:
                    self._reject(name, f"store refused the resource: {exc.message}", line=line)

    def _write(self, resources: Sequence[dict[str, Any]]) -> None:
        if not resources:
            return
        if self._prepared is not None:
            items = [prepare_resource(r, r["resourceType"], r["id"]) for r in resources]
            self._prepared.write_prepared(items)
        else:
            self.store.write(resources)
        for r in resources:
            self.summary.loaded[r["resourceType"]] += 1
        self._emit(LoadEvent("written", "", resources=len(resources)))

    # -- bundles --------------------------------------------------------------------------------

    def _load_bundle(self, name: str, doc: dict[str, Any]) -> None:
        self.flush()
        prepared = prepare_bundle(doc, resolve=self.resolve, accept=self._supported.__contains__)
        if prepared.atomic:
            self._store_transaction(name, prepared)
        else:
            self._store_batch(name, prepared)
        self.summary.skipped.update(prepared.skipped)

    def _check_entries(self, prepared: PreparedBundle) -> list[tuple[int, ValidationFailed]]:
        errors = []
        for entry in prepared.entries:
            if entry.resource is None or entry.exists:
                continue
            try:
                self._validate(entry.resource, entry.index, entry.references)
            except ValidationFailed as exc:
                errors.append((entry.index, exc))
                if prepared.atomic:
                    break
        return errors

    def _store_transaction(self, name: str, prepared: PreparedBundle) -> None:
        errors = self._check_entries(prepared)
        if errors:
            index, exc = errors[0]
            raise ValidationFailed(f"transaction rejected, nothing stored: entry {index}: {exc.message}")
        writes = [e.resource for e in prepared.entries if e.resource is not None and not e.exists]
        try:
            self._write(writes)
        except FhirgateError as exc:
            raise ValidationFailed(f"transaction rejected, nothing stored: {exc.message}") from None
        self._finish(name, prepared)

    def _store_batch(self, name: str, prepared: PreparedBundle) -> None:
        bad = dict(prepared.errors)
        bad.update(self._check_entries(prepared))
        for index, exc in sorted(bad.items()):
            self._reject(name, exc.message, entry=index)
        prepared.entries = [e for e in prepared.entries if e.index not in bad]
        writes = [e.resource for e in prepared.entries if e.resource is not None and not e.exists]
        try:
            self._write(writes)
        except FhirgateError:
            for entry in prepared.entries:
                if entry.resource is not None and not entry.exists:
                    try:
                        self._write([entry.resource])
                    except FhirgateError as exc:
                        self._reject(name, f"store refused the resource: {exc.message}", entry=entry.index)
        self._finish(name, prepared)

    def _finish(self, name: str, prepared: PreparedBundle) -> None:
        """Count conditional-create matches and apply DELETE entries (after the bundle's writes)."""
        for entry in prepared.entries:
            if entry.exists:
                self.summary.existing += 1
            elif entry.method == "DELETE":
                if entry.resource_type not in self._supported:
                    continue
                try:
                    if self.store.delete(entry.resource_type, entry.id):
                        self.summary.deleted += 1
                except FhirgateError as exc:
                    self._reject(name, f"delete failed: {exc.message}", entry=entry.index)
                self._resolved.clear()


def load_paths(
    store: FhirStore,
    paths: Sequence[Path],
    *,
    validation: ValidationMode = "full",
    progress: bool = False,
    on_event: EventHandler | None = None,
    batch_size: int = BATCH_SIZE,
    workers: int | None = None,
    initial: bool | None = None,
) -> LoadSummary:
    """Load FHIR JSON bundles, single resources, NDJSON files and folders of them into `store`.

    Bad units are rejected (see the module docstring for what a unit is) and reported in the summary;
    the load goes on. Raises InvalidInput only for a path that does not exist or an unknown mode.
    `workers`: processes that prepare files ahead (ingest.workers; 0 = everything in this process;
    None = all cores when the input is large enough to pay for starting them).
    `initial`: load into an empty store in its initial-load mode (indexes built at the end, no fsync
    until then; see SqliteStore.initial_load); None = whenever the store supports it and is empty.
    """
    if validation not in ("full", "fast"):
        raise InvalidInput("validation", f"unknown mode {validation!r}", "full, fast")
    files = discover(paths)
    total_bytes = 0
    for f in files:
        with contextlib.suppress(OSError):
            total_bytes += f.stat().st_size
    if workers is None:
        cores = os.cpu_count() or 1
        workers = cores if cores > 1 and total_bytes >= POOL_MIN_BYTES else 0
    prepared = isinstance(store, PreparedWriter)
    handlers: list[EventHandler] = [on_event] if on_event is not None else []
    stop: Callable[[], None] | None = None
    if progress:
        bar, stop = progress_handler(total_bytes)
        handlers.append(bar)

    def fan_out(event: LoadEvent) -> None:
        for h in handlers:
            h(event)

    # Shared-entity files (discover puts them first) are written before workers look anything up.
    first = sum(1 for p in files if p.name.startswith(FIRST_PREFIXES))
    gc_was_enabled = gc.isenabled()
    started = time.perf_counter()
    loader: Loader | None = None
    with contextlib.ExitStack() as stack:
        stack.callback(stop if stop is not None else (lambda: None))
        if gc_was_enabled:
            # Parsed bundles are many small objects that all live until written; cyclic-GC passes over
            # them cost more than parsing. Reference counting still frees everything as usual.
            gc.disable()
            stack.callback(gc.enable)
        initial_load = getattr(store, "initial_load", None)
        is_empty = getattr(store, "is_empty", None)
        if initial is None:
            initial = initial_load is not None and is_empty is not None and bool(is_empty())
        if initial and initial_load is not None:
            stack.enter_context(initial_load())
        pool: FilePool | None = None
        if workers > 0 and (prepared or validation == "full") and len(files) > first:
            pool = FilePool(workers, validation, prepare=prepared, store=store_address(store))
            stack.callback(pool.close)  # before initial_load's exit: workers hold read connections
        loader = Loader(
            store, validation=validation, on_event=fan_out if handlers else None, batch_size=batch_size, pool=pool
        )
        try:
            for i, path in enumerate(files):
                if pool is not None and i == first:
                    loader.flush()
                    # In an initial load, workers also assign rowids and param ids (no updates expected).
                    row_plan = getattr(store, "row_plan", None) if initial else None
                    pool.submit(files[first:], row_plan() if row_plan is not None else None)
                loader.load_file(path)
            loader.flush()
        finally:
            loader.summary.elapsed = time.perf_counter() - started
    refresh = getattr(store, "refresh_statistics", None)  # a server store's planner statistics (PostgreSQL)
    if callable(refresh) and loader.summary.resources:
        refresh()
    # Index building, the WAL checkpoint and statistics at the end of a load belong to the load's time.
    loader.summary.elapsed = time.perf_counter() - started
    return loader.summary
