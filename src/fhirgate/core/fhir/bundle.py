"""Turning a FHIR Bundle into resources ready to store: ids assigned, references rewritten, conditionals resolved.

Pure: the only outside knowledge (does `Practitioner?identifier=s|v` match a stored resource?) comes
through the `resolve` callback, so the caller decides where to look. Rules follow FHIR R4 §3.1.0.11
(batch/transaction) and §2.36.4 (Bundle resolving references): a `urn:uuid:` fullUrl is replaced by the
assigned `Type/id` in every Reference.reference of the bundle; conditional references (`Type?query`) and
conditional creates (`request.ifNoneExist`) must match exactly one (resp. at most one) resource.

A transaction is atomic (the first problem raises ValidationFailed naming the entry); a batch, collection
or searchset is processed entry by entry and its problems are returned in `PreparedBundle.errors`.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl

from fhirgate.core.fhir.validate import ID_RE
from fhirgate.core.fhir.validate import NO_REFERENCES as _NO_REFERENCES
from fhirgate.errors import FhirgateError, ValidationFailed

Resolver = Callable[[str, Mapping[str, str]], list[str]]
Method = Literal["POST", "PUT", "DELETE"]

BUNDLE_TYPES = ("transaction", "batch", "collection", "searchset")
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_COND_REF_RE = re.compile(r"([A-Z][A-Za-z]+)\?(.+)")
_TYPE_ID_RE = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})")
_TYPE_RE = re.compile(r"[A-Z][A-Za-z]+")


@dataclass(slots=True)
class PreparedEntry:
    """One bundle entry after preparation: what to do, to which resource, with references final."""

    index: int
    method: Method
    resource_type: str
    id: str
    resource: dict[str, Any] | None  # None for DELETE
    # Every Reference.reference in the resource after rewriting (for validation without another walk).
    references: list[str] = field(default_factory=list)
    # True when a conditional create (ifNoneExist) matched an existing resource: nothing to write.
    exists: bool = False


@dataclass(slots=True)
class PreparedBundle:
    """A prepared bundle: entries in order; `errors` lists (entry index, error) for non-atomic bundles."""

    type: str
    atomic: bool
    entries: list[PreparedEntry]
    errors: list[tuple[int, ValidationFailed]] = field(default_factory=list)
    # Entries whose type the caller does not accept, per type: left out of `entries`, not errors.
    skipped: Counter[str] = field(default_factory=Counter)


def new_id() -> str:
    """A fresh server-assigned id (a UUID4, valid per FHIR R4 §2.24.0.1)."""
    return str(uuid.uuid4())


def parse_query(query: str, *, location: str) -> dict[str, str]:
    """Search parameters of a conditional reference/create query (`identifier=system|value&...`)."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise ValidationFailed("malformed search query", location=location) from None
    params: dict[str, str] = {}
    for key, value in pairs:
        if key in params or not key or not value:
            raise ValidationFailed("search query needs distinct, non-empty parameters", location=location)
        params[key] = value
    return params


def _entry_error(index: int, message: str, where: str = "") -> ValidationFailed:
    return ValidationFailed(message, location=f"entry[{index}]{where}")


class _Preparer:
    """Holds one bundle's state while its entries are prepared."""

    def __init__(self, bundle_type: str, resolve: Resolver | None, make_id: Callable[[], str]) -> None:
        self.atomic = bundle_type == "transaction"
        self.has_request = bundle_type in ("transaction", "batch")
        self.resolve = resolve
        self.make_id = make_id
        self.cond_cache: dict[str, str] = {}

    def _lookup(self, rtype: str, query: str, location: str) -> list[str]:
        if self.resolve is None:
            raise ValidationFailed("conditional references cannot be resolved here", location=location)
        params = parse_query(query, location=location)
        try:
            return self.resolve(rtype, params)
        except ValidationFailed:
            raise
        except FhirgateError as exc:
            raise ValidationFailed(f"conditional query rejected: {exc.message}", location=location) from None

    def head(self, index: int, entry: Any) -> tuple[PreparedEntry, str | None, str | None]:
        """Method, type and id of an entry; also its fullUrl and ifNoneExist query."""
        if not isinstance(entry, dict):
            raise _entry_error(index, "entry must be a JSON object")
        full_url = entry.get("fullUrl")
        if full_url is not None and not isinstance(full_url, str):
            raise _entry_error(index, "fullUrl must be a string", ".fullUrl")
        resource = entry.get("resource")
        request = entry.get("request") if self.has_request else None
        method: Any = "POST"
        url: Any = None
        if_none_exist: Any = None
        if self.has_request:
            if not isinstance(request, dict):
                raise _entry_error(index, "request is required in transaction and batch bundles", ".request")
            method = request.get("method")
            url = request.get("url")
            if method not in ("POST", "PUT", "DELETE"):
                raise _entry_error(index, "request.method must be POST, PUT or DELETE for loading", ".request")
            if not isinstance(url, str) or not url:
                raise _entry_error(index, "request.url is required", ".request.url")
            if_none_exist = request.get("ifNoneExist")
            if if_none_exist is not None and (method != "POST" or not isinstance(if_none_exist, str)):
                raise _entry_error(index, "ifNoneExist must be a string on a POST", ".request.ifNoneExist")
        if method == "DELETE":
            m = _TYPE_ID_RE.fullmatch(url or "")
            if not m:
                raise _entry_error(index, "DELETE needs request.url Type/id (conditional delete unsupported)")
            return PreparedEntry(index, "DELETE", m.group(1), m.group(2), None), full_url, None
        if not isinstance(resource, dict):
            raise _entry_error(index, "resource is missing or not a JSON object", ".resource")
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str) or not _TYPE_RE.fullmatch(rtype):
            raise _entry_error(index, "resourceType is missing or malformed", ".resource.resourceType")
        rid = resource.get("id")
        if rid is not None and (not isinstance(rid, str) or not ID_RE.fullmatch(rid)):
            raise _entry_error(index, "id must match [A-Za-z0-9-.]{1,64}", ".resource.id")
        if method == "PUT":
            m = _TYPE_ID_RE.fullmatch(url or "")
            if not m:
                raise _entry_error(index, "PUT needs request.url Type/id (conditional update unsupported)")
            if m.group(1) != rtype or (rid is not None and rid != m.group(2)):
                raise _entry_error(index, "request.url does not match the resource's type and id")
            return PreparedEntry(index, "PUT", rtype, m.group(2), resource), full_url, None
        if self.has_request and url.split("?", 1)[0] != rtype:
            raise _entry_error(index, "POST request.url must be the resource type", ".request.url")
        # POST: keep the uuid of a urn:uuid fullUrl (Synthea) so ids and references stay stable;
        # otherwise keep the id of a collection entry, or assign a new one (FHIR R4 §3.1.0.11.2).
        if full_url and full_url.startswith("urn:uuid:") and _UUID_RE.fullmatch(full_url[9:]):
            final_id = full_url[9:]
        elif not self.has_request and isinstance(rid, str):
            final_id = rid
        else:
            final_id = self.make_id()
        return PreparedEntry(index, "POST", rtype, final_id, resource), full_url, if_none_exist

    def conditional_create(self, entry: PreparedEntry, query: str) -> None:
        """ifNoneExist: one match means the entry exists already and is not written (§3.1.0.8.1)."""
        where = f"entry[{entry.index}].request.ifNoneExist"
        ids = self._lookup(entry.resource_type, query, where)
        if len(ids) > 1:
            raise ValidationFailed("ifNoneExist matches more than one resource", location=where)
        if ids:
            entry.id, entry.exists = ids[0], True

    def rewrite(self, entry: PreparedEntry, mapping: Mapping[str, str]) -> None:
        """Rewrite urn:uuid/fullUrl references to Type/id and resolve conditional references, in place."""
        resource = entry.resource
        assert resource is not None
        refs: list[str] = []
        conditional: list[dict[str, Any]] = []
        stack: list[Any] = [resource]
        pop, push, get = stack.pop, stack.append, mapping.get
        while stack:
            cur = pop()
            if type(cur) is dict:
                for key, value in cur.items():
                    tv = type(value)
                    if tv is str:
                        if key == "reference":
                            new = get(value)
                            if new is not None:
                                cur[key] = value = new
                            elif value.startswith("urn:uuid:"):
                                raise _entry_error(entry.index, "urn:uuid reference matches no fullUrl in the bundle")
                            elif "?" in value and _COND_REF_RE.fullmatch(value):
                                conditional.append(cur)
                                continue
                            refs.append(value)
                    elif (tv is dict or tv is list) and key not in _NO_REFERENCES:
                        push(value)
            else:
                for value in cur:
                    tv = type(value)
                    if tv is dict or tv is list:
                        push(value)
        for holder in conditional:
            ref = holder["reference"]
            holder["reference"] = target = self._conditional_ref(entry.index, ref)
            refs.append(target)
        resource["id"] = entry.id
        entry.references = refs

    def _conditional_ref(self, index: int, ref: str) -> str:
        cached = self.cond_cache.get(ref)
        if cached is not None:
            return cached
        m = _COND_REF_RE.fullmatch(ref)
        assert m is not None
        rtype = m.group(1)
        where = f"entry[{index}].reference({rtype}?)"
        ids = self._lookup(rtype, m.group(2), where)
        if not ids:
            raise ValidationFailed(f"conditional reference to {rtype} matches no stored resource", location=where)
        if len(ids) > 1:
            raise ValidationFailed(f"conditional reference to {rtype} matches {len(ids)} resources", location=where)
        target = f"{rtype}/{ids[0]}"
        self.cond_cache[ref] = target
        return target


def prepare_bundle(
    bundle: Any,
    *,
    resolve: Resolver | None = None,
    make_id: Callable[[], str] = new_id,
    accept: Callable[[str], bool] | None = None,
) -> PreparedBundle:
    """Prepare every entry of a transaction/batch/collection/searchset bundle for storing.

    `resolve(type, params)` returns the ids of stored resources matching simple search params; it
    serves conditional references and ifNoneExist. Transactions raise on the first bad entry.
    `accept(type)` False leaves an entry out (counted in `skipped`); references to it still become Type/id.
    """
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise ValidationFailed("not a Bundle", location="resourceType")
    btype = bundle.get("type")
    if btype not in BUNDLE_TYPES:
        raise ValidationFailed(f"Bundle.type must be one of {', '.join(BUNDLE_TYPES)}", location="Bundle.type")
    entries_in = bundle.get("entry", [])
    if not isinstance(entries_in, list):
        raise ValidationFailed("Bundle.entry must be an array", location="Bundle.entry")
    prep = _Preparer(btype, resolve, make_id)
    out = PreparedBundle(btype, prep.atomic, [])
    good: list[tuple[PreparedEntry, str | None, str | None]] = []
    seen: set[tuple[str, str]] = set()
    skipped_map: dict[str, str] = {}

    def failed(index: int, exc: ValidationFailed) -> None:
        if prep.atomic:
            raise exc
        out.errors.append((index, exc))

    for index, raw in enumerate(entries_in):
        try:
            head = prep.head(index, raw)
            entry, full_url, cond = head
            if accept is not None and not accept(entry.resource_type):
                out.skipped[entry.resource_type] += 1
                if full_url and entry.method != "DELETE":
                    skipped_map[full_url] = f"{entry.resource_type}/{entry.id}"
                continue
            if cond is not None:
                prep.conditional_create(entry, cond)
            key = (entry.resource_type, entry.id)
            if key in seen and not entry.exists:
                raise _entry_error(index, f"{entry.resource_type}/{entry.id} appears twice in the bundle")
            seen.add(key)
            good.append(head)
        except ValidationFailed as exc:
            failed(index, exc)
    mapping: dict[str, str] = dict(skipped_map)
    for entry, full_url, _ in good:
        if full_url and entry.method != "DELETE":
            mapping[full_url] = f"{entry.resource_type}/{entry.id}"
    for entry, _, _ in good:
        if entry.resource is not None and not entry.exists:
            try:
                prep.rewrite(entry, mapping)
            except ValidationFailed as exc:
                failed(entry.index, exc)
                continue
        out.entries.append(entry)
    return out
