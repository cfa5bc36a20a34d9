"""RemoteStore: the FhirStore contract's read side over an upstream FHIR R4 server (fhirgate.remote.FhirClient).

The service layer runs unchanged on it: the same policy, consent, minimization and audit apply to what the
upstream returns, which is untrusted (types and ids checked, compartments re-checked, sizes bounded). Writes
are refused: with a remote backend fhirgate is read-only. Paging, version and fingerprint choices are in
docs/remote-fhir.md.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from fhirgate.core.fhir.compartment import in_patient_compartment, patients_of
from fhirgate.core.fhir.dates import parse_date_range
from fhirgate.core.fhir.definitions import SUPPORTED_TYPES, compartment_params
from fhirgate.core.fhir.search import SearchQuery, parse_search
from fhirgate.errors import InvalidInput, StoreError
from fhirgate.remote.client import FhirClient
from fhirgate.remote.errors import UpstreamRefused
from fhirgate.store.contract import Resource, SearchPage, StoredResource
from fhirgate.store.remote.errors import upstream_errors
from fhirgate.store.remote.paging import Bundle, Pager, bundle_entries
from fhirgate.store.remote.query import Params, compartment_param, search_params

__all__ = ["READ_ONLY", "RemoteStore"]

READ_ONLY = (
    "the remote FHIR backend is read-only in fhirgate: writes stay proposals on the embedded store and are "
    "never sent upstream"
)
_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")  # FHIR R4 id (§2.24.0.1)
_VERSION_RE = re.compile(r"^[1-9][0-9]{0,14}$")
_INSTANT_MAX = 40
_MAX_ITEMS = 1000  # bound on ids (find_ids), versions (history) and linked resources taken from the upstream
_MAX_PAGES = 50  # bound on pages followed by one call (history, find_ids, linked_patients, fallback paging)


def to_stored(body: Any, expected_type: str | None = None) -> StoredResource | None:
    """A StoredResource from an upstream resource, or None when it is not one fhirgate can govern.

    Its type must be a supported one (and `expected_type` when given), its id a FHIR id. meta.versionId is
    kept when it is a positive integer, else 1 (upstreams may use opaque version ids; writes never use it).
    """
    if not isinstance(body, dict):
        return None
    rtype, rid = body.get("resourceType"), body.get("id")
    if rtype not in SUPPORTED_TYPES or (expected_type is not None and rtype != expected_type):
        return None
    if not isinstance(rid, str) or not _ID_RE.match(rid):
        return None
    meta = body.get("meta")
    meta = meta if isinstance(meta, dict) else {}
    vid, updated = meta.get("versionId"), meta.get("lastUpdated")
    version = int(vid) if isinstance(vid, str) and _VERSION_RE.match(vid) else 1
    last = updated if isinstance(updated, str) and len(updated) <= _INSTANT_MAX else ""
    return StoredResource(str(rtype), rid, version, last, body)


class RemoteStore:
    """The FhirStore read side over one upstream FHIR R4 server; writes raise StoreError (read-only backend).

    `paging` maps fhirgate's integer offsets to the upstream: "offset" sends `_count` + `_offset`; "links"
    follows `next` links from page 1 (remembering recent links); "auto" uses `_offset` when the
    CapabilityStatement lists it as a search parameter, else links. `fingerprint_ttl` seconds bound how stale
    a fingerprint (and so the consent cache keyed on it) may be.
    """

    # Tools that need fhirgate's embedded store (SQL views, applied writes): the Gateway hides and refuses them.
    embedded = False

    def __init__(
        self,
        client: FhirClient,
        *,
        paging: str = "auto",
        link_cache: int = 256,
        fingerprint_ttl: float = 5.0,
        fingerprint_bucket: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if paging not in ("auto", "offset", "links"):
            raise InvalidInput("paging", f"unknown mode {paging!r}", "auto, offset, links")
        self.client = client
        self._paging = paging
        self._pager = Pager(client, link_cache=link_cache, max_pages=_MAX_PAGES)
        self._fp_ttl = fingerprint_ttl
        self._fp_bucket = fingerprint_bucket
        self._clock = clock
        self._fp: dict[str, tuple[float, str]] = {}
        self._fp_unsorted: set[str] = set()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RemoteStore({self.client.base_url!r})"

    # -- capabilities -----------------------------------------------------------------------------------

    def _offset_paging(self, resource_type: str) -> bool:
        """True when `_offset` is the paging to use for searches of the type (see the class docstring)."""
        if self._paging != "auto":
            return self._paging == "offset"
        for rest in self.client.capabilities().get("rest", []):
            if not isinstance(rest, dict) or rest.get("mode") != "server":
                continue
            if _names(rest.get("searchParam")) & {"_offset"}:
                return True
            for res in rest.get("resource", []) if isinstance(rest.get("resource"), list) else []:
                if isinstance(res, dict) and res.get("type") == resource_type:
                    return "_offset" in _names(res.get("searchParam"))
        return False

    # -- reads ------------------------------------------------------------------------------------------

    def read(self, resource_type: str, id: str) -> StoredResource | None:
        """The current version from the upstream (`GET [type]/[id]`), or None when absent or deleted."""
        with upstream_errors():
            return to_stored(self.client.read(resource_type, id), resource_type)

    def vread(self, resource_type: str, id: str, version: int) -> StoredResource | None:
        """One version (`GET [type]/[id]/_history/[version]`), or None."""
        with upstream_errors():
            found = to_stored(self.client.vread(resource_type, id, str(version)), resource_type)
        return found if found is not None and found.id == id else None

    def history(self, resource_type: str, id: str) -> list[StoredResource]:
        """Every version the upstream keeps (deletions have no body and are left out), newest first."""
        out: list[StoredResource] = []
        with upstream_errors():
            bundle = self.client.history(resource_type, id)
            pages = 0
            while bundle is not None and len(out) < _MAX_ITEMS and pages < _MAX_PAGES:
                for _, resource in bundle_entries(bundle):
                    stored = to_stored(resource, resource_type)
                    if stored is not None and stored.id == id:
                        out.append(stored)
                bundle = self.client.next_page(bundle, bundle_type="history")
                pages += 1
        return sorted(out[:_MAX_ITEMS], key=lambda s: s.version, reverse=True)

    def write(self, resources: Sequence[Resource], **_: Any) -> list[StoredResource]:
        """Refused: the remote backend is read-only in fhirgate."""
        raise StoreError(READ_ONLY)

    def delete(self, resource_type: str, id: str, *, expect_version: int | None = None) -> bool:
        """Refused: the remote backend is read-only in fhirgate."""
        raise StoreError(READ_ONLY)

    # -- search -----------------------------------------------------------------------------------------

    def search(self, query: SearchQuery) -> SearchPage:
        """Run a parsed search upstream (FHIR R4 §3.1.1); matches and includes re-checked against the compartment."""
        rtype, pid = query.resource_type, query.compartment
        params = search_params(query)
        if pid is not None:
            param = compartment_param(rtype)
            if rtype == "Patient":
                params.append(("_id", pid))
            elif param is None:  # no member of this type is in any Patient compartment (FHIR R4 §3.2.0)
                return SearchPage([], total=0 if query.total or query.count == 0 else None)
            else:
                params.append((param, f"Patient/{pid}"))
        with upstream_errors():
            if query.count == 0:
                bundle = self.client.search(rtype, [*params, ("_summary", "count")])
                return SearchPage([], total=_total(bundle))
            if query.total:
                params.append(("_total", "accurate"))

            def first(extra: Params) -> Bundle:
                return self.client.search(rtype, [*params, *extra])

            window = self._pager.window(
                rtype, params, first, query.count, query.offset, offset_mode=self._offset_paging(rtype)
            )
        matches = [s for s in (to_stored(r, rtype) for r in window.matches) if s is not None]
        included = [s for s in map(to_stored, window.included) if s is not None]
        if pid is not None:
            matches = [s for s in matches if in_patient_compartment(s.body, pid)]
            included = [s for s in included if in_patient_compartment(s.body, pid)]
        seen = {s.ref for s in matches}
        extras: list[StoredResource] = []
        for stored in included:
            if stored.ref not in seen:
                seen.add(stored.ref)
                extras.append(stored)
        total = _total(window.bundle) if query.total else None
        return SearchPage(matches, extras, total=total, next_offset=window.next_offset)

    def compartment_page(
        self,
        patient_id: str,
        *,
        types: Sequence[str] | None = None,
        since: str | None = None,
        count: int = 50,
        offset: int = 0,
    ) -> SearchPage:
        """The Patient and its compartment, paged: Patient/$everything when the upstream's CapabilityStatement
        lists it (FHIR R4 Patient-everything), else the Patient plus one compartment search per type."""
        if count < 0 or offset < 0:
            raise InvalidInput("count" if count < 0 else "offset", "must not be negative")
        if since is not None:
            try:
                parse_date_range(since)
            except ValueError:
                raise InvalidInput("since", "not a FHIR instant", "YYYY-MM-DDThh:mm:ss[.fff]Z") from None
        wanted = list(types) if types else [t for t in SUPPORTED_TYPES if t == "Patient" or compartment_params(t)]
        with upstream_errors():
            if self.client.supports("Patient", "everything"):
                return self._everything(patient_id, wanted, types is not None, since, count, offset)
        return self._compartment_by_type(patient_id, wanted, since, count, offset)

    def _everything(
        self, pid: str, wanted: list[str], typed: bool, since: str | None, count: int, offset: int
    ) -> SearchPage:
        params: Params = [("_type", ",".join(wanted))] if typed else []
        if since is not None:
            params.append(("_since", since))

        def first(extra: Params) -> Bundle:
            return self.client.everything(pid, [*params, *extra])

        window = self._pager.window(f"Patient/{pid}/$everything", params, first, count, offset, offset_mode=False)
        out: list[StoredResource] = []
        for resource in [*window.matches, *window.included]:
            stored = to_stored(resource)
            if stored is not None and stored.resource_type in wanted and in_patient_compartment(stored.body, pid):
                out.append(stored)
        return SearchPage(out, total=_total(window.bundle), next_offset=window.next_offset)

    def _compartment_by_type(
        self, pid: str, wanted: list[str], since: str | None, count: int, offset: int
    ) -> SearchPage:
        """One window over [Patient, type1 members, type2 members, ...], each type counted upstream first."""
        since_params = [("_lastUpdated", f"ge{since}")] if since is not None else []
        sizes: list[tuple[str, int]] = []
        for rtype in wanted:
            counted = self.search(replace(self._compartment_query(rtype, pid, since_params), count=0, total=True))
            sizes.append((rtype, counted.total or 0))
        total = sum(n for _, n in sizes)
        out: list[StoredResource] = []
        start = 0
        for rtype, size in sizes:
            want = count - len(out)
            if want <= 0:
                break
            if offset < start + size and offset + count > start:
                local = max(0, offset - start)
                query = replace(self._compartment_query(rtype, pid, since_params), count=want, offset=local)
                out += self.search(query).matches
            start += size
        return SearchPage(out, total=total, next_offset=offset + count if offset + count < total else None)

    @staticmethod
    def _compartment_query(rtype: str, pid: str, since_params: Params) -> SearchQuery:
        return replace(parse_search(rtype, since_params), compartment=pid)

    def find_ids(self, resource_type: str, params: Mapping[str, str]) -> list[str]:
        """Ids matching simple search params, from the upstream (at most 1000)."""
        query = parse_search(resource_type, list(params.items()))
        return [s.id for s in self._scan(resource_type, search_params(query))]

    def iter_type(self, resource_type: str) -> Iterator[StoredResource]:
        """Every current resource of a type, by paged search (`next` links, FHIR R4 §3.1.1.5.5)."""
        with upstream_errors():
            bundle: Bundle | None = self.client.search(resource_type, [("_count", "100")])
            while bundle is not None:
                for mode, resource in bundle_entries(bundle):
                    stored = to_stored(resource, resource_type) if mode == "match" else None
                    if stored is not None:
                        yield stored
                bundle = self.client.next_page(bundle)

    def _scan(self, resource_type: str, params: Params) -> list[StoredResource]:
        """The matches of one search, following at most _MAX_PAGES pages and _MAX_ITEMS resources."""
        out: list[StoredResource] = []
        with upstream_errors():
            bundle: Bundle | None = self.client.search(resource_type, [*params, ("_count", "100")])
            pages = 0
            while bundle is not None and len(out) < _MAX_ITEMS and pages < _MAX_PAGES:
                for mode, resource in bundle_entries(bundle):
                    stored = to_stored(resource, resource_type) if mode == "match" else None
                    if stored is not None:
                        out.append(stored)
                bundle = self.client.next_page(bundle)
                pages += 1
        return out[:_MAX_ITEMS]

    def linked_patients(self, target: str, via: Sequence[tuple[str, str]]) -> frozenset[str]:
        """Patients whose compartment holds a `via` resource referencing `target`, by one search per `via`."""
        ttype, _, tid = target.partition("/")
        if not ttype or not _ID_RE.match(tid):
            return frozenset()
        out: set[str] = set()
        for rtype, code in via:
            for stored in self._scan(rtype, [(code, f"{ttype}/{tid}")]):
                out.update(patients_of(stored.body))
        return frozenset(out)

    def fingerprint(self, resource_type: str) -> str:
        """The upstream's newest change of the type and its count (`_sort=-_lastUpdated&_count=1&_total=accurate`),
        cached `fingerprint_ttl` s; a time bucket when the upstream cannot sort by _lastUpdated."""
        now = self._clock()
        with self._lock:
            hit = self._fp.get(resource_type)
            unsorted = resource_type in self._fp_unsorted
        if hit is not None and now - hit[0] < self._fp_ttl:
            return hit[1]
        if unsorted:
            return f"t{int(now // self._fp_bucket)}"
        params = [("_sort", "-_lastUpdated"), ("_count", "1"), ("_total", "accurate")]
        try:
            with upstream_errors():
                bundle = self.client.search(resource_type, params)
        except StoreError as exc:
            if getattr(exc, "code", None) != UpstreamRefused.code:
                raise
            with self._lock:
                self._fp_unsorted.add(resource_type)
            return f"t{int(now // self._fp_bucket)}"
        newest = next((to_stored(r, resource_type) for m, r in bundle_entries(bundle) if m == "match"), None)
        mark = f"{_total(bundle)}|" + (f"{newest.id}|{newest.version}|{newest.last_updated}" if newest else "-")
        with self._lock:
            self._fp[resource_type] = (now, mark)
        return mark

    def counts(self) -> dict[str, int]:
        """Current resources per supported type the upstream can search (`_summary=count`, FHIR R4 §3.1.1.5.8)."""
        out: dict[str, int] = {}
        with upstream_errors():
            for rtype in SUPPORTED_TYPES:
                if not self.client.supports(rtype, "search-type"):
                    continue
                total = _total(self.client.search(rtype, [("_summary", "count")]))
                if total:
                    out[rtype] = total
        return out

    def close(self) -> None:
        """Close the upstream client's connections."""
        self.client.close()


def _names(params: Any) -> set[str]:
    """Names of a CapabilityStatement `searchParam` list."""
    items = params if isinstance(params, list) else []
    return {str(p.get("name")) for p in items if isinstance(p, dict)}


def _total(bundle: Bundle) -> int | None:
    total = bundle.get("total")
    return total if isinstance(total, int) and not isinstance(total, bool) else None
