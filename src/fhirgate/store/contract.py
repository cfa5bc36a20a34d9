"""The typed contract every store backend satisfies (SQLite now; PostgreSQL and remote FHIR later).

One contract suite (tests/store/) runs against every implementation, so callers above this layer
never depend on which backend they talk to.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard, runtime_checkable

from fhirgate.errors import Conflict, InvalidInput

if TYPE_CHECKING:
    from fhirgate.core.fhir.indexing import IndexRows
    from fhirgate.core.fhir.search import SearchQuery

Resource = dict[str, Any]

# A relative reference `Type/id` (FHIR R4 §2.24.0.1 id: 1-64 of [A-Za-z0-9\-.]).
_REF_RE = re.compile(r"([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})")

# One pinned resource of a conditional write: (type, id, version the caller read; None = must not exist).
Expectation = tuple[str, str, int | None]


@dataclass(frozen=True, slots=True)
class StoredResource:
    """One version of a resource as stored: body carries meta.versionId and meta.lastUpdated."""

    resource_type: str
    id: str
    version: int
    last_updated: str
    body: Resource
    deleted: bool = False

    @property
    def ref(self) -> str:
        """The relative reference `Type/id`."""
        return f"{self.resource_type}/{self.id}"


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of search results: matches in order, then _include/_revinclude extras."""

    matches: list[StoredResource]
    included: list[StoredResource] = field(default_factory=list)
    # Total matches when the backend counted them (SearchQuery.total), else None.
    total: int | None = None
    # Offset of the next page, or None when this page is the last.
    next_offset: int | None = None


def _is_version(version: object) -> TypeGuard[int]:
    """True for a meta.versionId as this store assigns it: an int >= 1 (bool excluded)."""
    return isinstance(version, int) and not isinstance(version, bool) and version >= 1


def check_version(version: object, param: str = "expect_version") -> int:
    """A version a caller read (meta.versionId as an int >= 1); InvalidInput naming `param` otherwise."""
    if not _is_version(version):
        raise InvalidInput(param, "not a positive integer version")
    return version


def parse_expect(expect: Mapping[str, int | None] | None) -> list[Expectation]:
    """The pins of a conditional write as (type, id, version), checked up front so a backend never sees junk.

    Keys are relative references `Type/id`; values the meta.versionId the caller read (an int >= 1), or
    None for "must not exist". InvalidInput names the parameter, never the offending value.
    """
    if expect is None:
        return []
    if not isinstance(expect, Mapping):
        raise InvalidInput("expect", "must map Type/id to a version or None")
    out: list[Expectation] = []
    for ref, version in expect.items():
        match = _REF_RE.fullmatch(ref) if isinstance(ref, str) else None
        if match is None:
            raise InvalidInput("expect", "a key is not a relative reference", "Type/id")
        if version is not None and not _is_version(version):
            raise InvalidInput("expect", f"the version for {ref} is not a positive integer or None")
        out.append((match[1], match[2], version))
    return out


def expectation_conflict(pin: Expectation, stored: tuple[int, bool] | None) -> Conflict | None:
    """The Conflict for one pin against the stored (version, deleted) state, or None when the pin holds.

    FHIR R4 §3.1.0.5.3 Managing Resource Contention (http.html#concurrency): a version-aware update
    names the version the client read (If-Match: W/"n") and is refused when the current version differs;
    "must not exist" is If-None-Match: * (a deleted resource counts as absent). Messages carry the
    reference and versions only.
    """
    rtype, rid, expected = pin
    ref = f"{rtype}/{rid}"
    current = None if stored is None or stored[1] else stored[0]
    if expected is None:
        return None if current is None else Conflict(f"{ref} already exists (version {current})")
    if stored is None:
        return Conflict(f"{ref} no longer exists (nothing is stored; the write expected version {expected})")
    if current is None:
        return Conflict(
            f"{ref} no longer exists (deleted at version {stored[0]}; the write expected version {expected})"
        )
    if current != expected:
        return Conflict(
            f"{ref} changed since it was read (version {current} is stored; the write expected version {expected})"
        )
    return None


@dataclass(slots=True)
class PreparedResource:
    """A resource already validated, rewritten, serialized and indexed by the caller (a loader's worker).

    `body` is the JSON text of the resource WITHOUT its top-level `meta`; `meta` is that element (or None).
    The store adds meta.versionId/lastUpdated and stores `{"meta": ..., <body members>}`, so a body is
    serialized once, wherever it was prepared, and never parsed on the write path.
    """

    resource_type: str
    id: str
    meta: dict[str, Any] | None
    body: str
    index: IndexRows


@runtime_checkable
class PreparedWriter(Protocol):
    """Optional store capability used by bulk loaders: writing PreparedResources atomically."""

    def write_prepared(self, items: Sequence[PreparedResource]) -> int:
        """Create or update every item with its index rows, all or none; returns how many were written."""
        ...


# One resource written in a transaction: (store rowid, resource type, its new body; None when deleted).
ResourceChange = tuple[int, str, Resource | None]

# One change another store reports to a replica (SqliteStore.mirror): (resource type, id, body; None when deleted).
MirrorChange = tuple[str, str, Resource | None]
# A replica's pull: given its position in the source (None: none yet) and the types it keeps (None: all), yield
# the changed resources in chunks and return the new position (e.g. store.postgres.changes.PgChangeFeed.pull).
MirrorPull = Callable[[str | None, frozenset[str] | None], Generator[list[MirrorChange], None, str]]


@dataclass(frozen=True, slots=True)
class Mirrored:
    """What one SqliteStore.mirror call did: changes applied, the position reached, the types kept (None: all)."""

    applied: int
    position: str
    types: frozenset[str] | None


@runtime_checkable
class DerivedTables(Protocol):
    """Tables computed from the current resources (e.g. analytics views) that the store keeps current itself.

    The store calls `apply` inside the write transaction of every write path, with the resources of the
    watched types written in THAT transaction, so derived rows commit or roll back with their resources.
    `conn` is the backend's connection (an apsw.Connection for SQLite). The store layer never imports
    what implements this; store.factory.open_store wires the analytics views in.
    """

    def load(self, conn: Any) -> bool:
        """Read the derived tables' registry when the store opens; True when some table must be (re)built."""
        ...

    def prepare(self, conn: Any) -> None:
        """Inside a write transaction: create missing tables and rebuild stale ones from the current resources."""
        ...

    def watched(self, conn: Any) -> frozenset[str]:
        """Resource types whose writes `apply` must see (inside the transaction; may re-read the registry)."""
        ...

    def apply(self, conn: Any, changes: Sequence[ResourceChange]) -> None:
        """Bring the tables up to date with the changes of one transaction (the last change of a rowid wins)."""
        ...

    def rebuild(self, conn: Any) -> object:
        """Inside a write transaction: rebuild every table from the current resources (after an initial load)."""
        ...


@runtime_checkable
class FhirStore(Protocol):
    """A FHIR R4 resource store with versioned history and search."""

    def read(self, resource_type: str, id: str) -> StoredResource | None:
        """The current version, or None when absent or deleted."""
        ...

    def vread(self, resource_type: str, id: str, version: int) -> StoredResource | None:
        """One historical version, or None."""
        ...

    def history(self, resource_type: str, id: str) -> list[StoredResource]:
        """Every version, newest first (FHIR R4 §3.1.0.4 history)."""
        ...

    def write(
        self,
        resources: Sequence[Resource],
        *,
        index: Sequence[IndexRows] | None = None,
        expect: Mapping[str, int | None] | None = None,
        precondition: Callable[[], None] | None = None,
    ) -> list[StoredResource]:
        """Create or update resources atomically: all are stored, or none.

        Each resource needs resourceType and id. The store assigns meta.versionId (previous + 1)
        and meta.lastUpdated, keeps the previous version in history, and writes every search index.
        `index`, when given, holds rows already extracted for each resource (same order), so a
        loader can extract in worker processes.

        Optimistic concurrency (FHIR R4 §3.1.0.5.3, version-aware update / If-Match): `expect` maps
        `Type/id` to the version the caller read, or None for "must not exist" (absent or deleted).
        Pinned refs need not be among `resources`. Checked inside the write transaction before anything
        is written: any mismatch raises Conflict and nothing is written; a malformed pin, InvalidInput.
        `precondition` runs next, in the same transaction and on the calling thread: it may call this
        store's read/search/find_ids (and sees the transaction's view) but must not write; if it raises,
        nothing is written and its exception propagates unchanged. With `expect` or `precondition`, an
        empty `resources` still checks them (and writes nothing).
        """
        ...

    def delete(self, resource_type: str, id: str, *, expect_version: int | None = None) -> bool:
        """Delete the current version (history kept); False when there was nothing to delete.

        With `expect_version` (the version the caller read, FHIR R4 §3.1.0.5.3): Conflict, and nothing
        deleted, when another version is current or the resource is absent or already deleted.
        """
        ...

    def search(self, query: SearchQuery) -> SearchPage:
        """Run a parsed search (see core.fhir.search.parse_search)."""
        ...

    def compartment_page(
        self,
        patient_id: str,
        *,
        types: Sequence[str] | None = None,
        since: str | None = None,
        count: int = 50,
        offset: int = 0,
    ) -> SearchPage:
        """Patient $everything as an index lookup: the Patient and its compartment, paged."""
        ...

    def find_ids(self, resource_type: str, params: Mapping[str, str]) -> list[str]:
        """Ids matching simple search params (for conditional references such as `Practitioner?identifier=s|v`)."""
        ...

    def iter_type(self, resource_type: str) -> Iterator[StoredResource]:
        """Every current resource of a type (bulk export)."""
        ...

    def linked_patients(self, target: str, via: Sequence[tuple[str, str]]) -> frozenset[str]:
        """Patients whose compartment holds a resource of a `via` type referencing `target` (`Type/id`)
        through the `via` reference search parameter; a Patient referencing it links itself."""
        ...

    def fingerprint(self, resource_type: str) -> str:
        """A value that changes whenever a resource of the type is created, updated or deleted."""
        ...

    def counts(self) -> dict[str, int]:
        """Current resources per type."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
