"""Store-ready resources for the loader's fast path, and the compact bytes that carry them between processes.

A resource is extracted (search-index rows), then serialized once without its top-level `meta` (the store
adds meta.versionId/lastUpdated, see store.contract.PreparedResource). Between a worker process and the
writer, a file's prepared resources travel as one pickle (protocol 5) of plain tuples of str/int/float:
never resource dicts. Measured per resource (benchmarks/ingest.py data): rows + bodies cost ≈9 µs to
pickle and ≈5 µs to unpickle, against ≈7 µs and ≈10 µs with orjson (which escapes every body string);
the unpickling side is the single writer process, so it is the side that counts. Payloads only ever come
from this package's own worker processes.
"""

from __future__ import annotations

import pickle
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from fhirgate.core.fhir.extract import extract
from fhirgate.core.fhir.indexing import IndexRows
from fhirgate.store.contract import PreparedResource
from fhirgate.store.sqlite.writer import TableRows, table_rows

PAYLOAD_VERSION = 1
ROWS_VERSION = 2


def prepare_resource(resource: dict[str, Any], resource_type: str, id: str) -> PreparedResource:
    """Index and serialize one validated resource (its `meta` element is moved out of the body).

    Raises ValidationFailed/InvalidInput from extraction for shapes the extractor cannot walk.
    """
    index = extract(resource)
    meta = resource.get("meta")
    rest = resource if meta is None else {k: v for k, v in resource.items() if k != "meta"}
    body = orjson.dumps(rest).decode()
    return PreparedResource(resource_type, id, meta if isinstance(meta, dict) else None, body, index)


def encode(items: list[PreparedResource], skipped: Counter[str]) -> bytes:
    """One file's prepared resources (and skipped-type counts) as bytes."""
    rows = [
        (
            p.resource_type,
            p.id,
            p.meta,
            p.body,
            p.index.token,
            p.index.token_text,
            p.index.string,
            p.index.date,
            p.index.reference,
            p.index.quantity,
            p.index.number,
            p.index.uri,
            p.index.patients,
        )
        for p in items
    ]
    return pickle.dumps((PAYLOAD_VERSION, dict(skipped), rows), protocol=5)


@dataclass(slots=True)
class PreparedFile:
    """A decoded payload: either PreparedResources, or final rows (rowids and param ids assigned)."""

    skipped: Counter[str]
    items: list[PreparedResource] = field(default_factory=list)
    # (rid, type, id, meta, body without meta) and table -> rows, for SqliteStore.write_rows.
    resources: list[tuple[int, str, str, dict[str, Any] | None, str]] | None = None
    tables: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)

    def count(self) -> int:
        """Resources in the file."""
        return len(self.resources) if self.resources is not None else len(self.items)

    def types(self) -> list[str]:
        """The resource type of each resource, in order."""
        if self.resources is not None:
            return [r[1] for r in self.resources]
        return [p.resource_type for p in self.items]


def encode_rows(
    items: list[PreparedResource], skipped: Counter[str], rid_base: int, pids: Mapping[str, Mapping[str, int]]
) -> bytes:
    """A file's resources as final rows: rowids from rid_base on, param ids from `pids`.

    Raises KeyError when a param has no id (the caller then sends encode()'s form instead).
    """
    tables: TableRows = {}
    resources = []
    for offset, p in enumerate(items):
        rid = rid_base + offset
        table_rows(rid, pids[p.resource_type], p.index, tables)
        resources.append((rid, p.resource_type, p.id, p.meta, p.body))
    return pickle.dumps((ROWS_VERSION, dict(skipped), resources, tables), protocol=5)


def decode(data: bytes) -> PreparedFile:
    """The inverse of encode / encode_rows (rows come back as lists, which the store binds like tuples)."""
    doc = pickle.loads(data)  # noqa: S301 - produced by this package's own worker processes only
    version, skipped = doc[0], Counter(doc[1])
    if version == ROWS_VERSION:
        return PreparedFile(skipped, resources=doc[2], tables=doc[3])
    if version != PAYLOAD_VERSION:
        raise ValueError("payload version mismatch")
    items = [
        PreparedResource(rtype, id_, meta, body, IndexRows(tok, ttx, sx, dt, ref, qty, num, uri, patients))
        for rtype, id_, meta, body, tok, ttx, sx, dt, ref, qty, num, uri, patients in doc[2]
    ]
    return PreparedFile(skipped, items=items)
