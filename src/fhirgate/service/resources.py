"""Use cases over any resource type: search with paging and includes, and read by id.

Both plan access before touching the store and re-authorize every resource that would leave; a read
of a resource the principal may not see answers exactly like a read of one that does not exist.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from fhirgate.core.fhir.definitions import SUPPORTED_TYPES, is_supported
from fhirgate.core.fhir.search import MAX_COUNT, Clause, SearchQuery, parse_search
from fhirgate.errors import InvalidInput, NotFound
from fhirgate.service.auditing import Trail
from fhirgate.service.code_expansion import expand_code_below
from fhirgate.service.guard import Guard
from fhirgate.service.paging import Pager
from fhirgate.service.shaping import check_elements, check_format, check_summary, page_info
from fhirgate.store.contract import FhirStore

# FHIR R4 §2.24.0.1 id
ID_PATTERN = re.compile(r"[A-Za-z0-9\-.]{1,64}")
# Result parameters the tool takes as its own arguments, not inside `params`.
_RESERVED = {
    "_count": "count",
    "_offset": "cursor",
    "_elements": "elements",
    "_summary": "summary",
    "_total": "(totals are returned when cheap)",
    "_format": "format",
}
_MAX_PARAMS = 30
_MAX_VALUE = 512


@dataclass(frozen=True, slots=True)
class Services:
    """What the use cases share: the store and the cursor pager."""

    store: FhirStore
    pager: Pager


def check_type(resource_type: str, param: str = "resource_type") -> str:
    """A supported FHIR resource type name, or InvalidInput naming `param`."""
    if not isinstance(resource_type, str) or not is_supported(resource_type):
        raise InvalidInput(param, "unsupported resource type", ", ".join(SUPPORTED_TYPES))
    return resource_type


def check_id(value: str, param: str = "id") -> str:
    """A FHIR logical id ([A-Za-z0-9-.]{1,64}), or InvalidInput naming `param`."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise InvalidInput(param, "not a FHIR id", "1-64 characters of A-Z a-z 0-9 - .")
    return value


def check_count(value: int, high: int, param: str = "count") -> int:
    """A page size within [1, high]."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise InvalidInput(param, f"must be an integer from 1 to {high}")
    return value


def flatten_params(params: Mapping[str, str | list[str]] | None) -> list[tuple[str, str]]:
    """The tool's `params` object as FHIR (name, value) pairs; lists repeat the parameter (AND)."""
    if params is None:
        return []
    if not isinstance(params, Mapping):
        raise InvalidInput("params", "must be an object of search parameter names to values")
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        if not isinstance(name, str) or not name:
            raise InvalidInput("params", "parameter names must be non-empty strings")
        if name in _RESERVED:
            raise InvalidInput(f"params.{name}", "is set by a tool argument, not in params", _RESERVED[name])
        values = value if isinstance(value, list) else [value]
        for item in values:
            if not isinstance(item, str) or len(item) > _MAX_VALUE:
                raise InvalidInput(f"params.{name}", f"values must be strings of at most {_MAX_VALUE} characters")
            pairs.append((name, item))
    if len(pairs) > _MAX_PARAMS:
        raise InvalidInput("params", f"at most {_MAX_PARAMS} parameter values")
    return pairs


def _chain_types(clauses: Sequence[Clause]) -> set[str]:
    found: set[str] = set()
    for clause in clauses:
        if clause.chain_type is not None:
            found.add(clause.chain_type)
            if clause.chained is not None:
                found |= _chain_types([clause.chained])
    return found


def plan_query(guard: Guard, query: SearchQuery) -> SearchQuery:
    """Narrow a parsed query by policy: compartment, single constraint set, chained target types."""
    plan = guard.plan(query.resource_type, "s")
    for target in sorted(_chain_types(query.clauses)):
        # Chaining searches the target type: the caller must be allowed to search it too.
        guard.plan(target, "s")
    if len(plan.constraint_sets) == 1:
        narrowed = parse_search(query.resource_type, list(plan.constraint_sets[0]))
        query = replace(query, clauses=query.clauses + narrowed.clauses)
    return replace(query, compartment=plan.compartment)


def search_resources(
    env: Services,
    guard: Guard,
    trail: Trail,
    *,
    resource_type: str,
    params: Mapping[str, str | list[str]] | None,
    count: int,
    cursor: str | None,
    fmt: str,
    elements: Sequence[str] | None,
    summary: str | None,
) -> dict[str, Any]:
    """One page of a FHIR search, every match and include authorized, with a cursor for the next."""
    trail.resource_type = resource_type if isinstance(resource_type, str) else None
    check_type(resource_type)
    pairs = flatten_params(params)
    trail.query_params = [name for name, _ in pairs]
    pairs = expand_code_below(resource_type, pairs)  # ICD-10-CM code:below -> the code and its descendants
    count = check_count(count, MAX_COUNT)
    fmt = check_format(fmt)
    names = check_elements(elements)
    mode = check_summary(summary)
    arguments = {"resource_type": resource_type, "params": pairs, "count": count, "elements": list(names)}
    offset = env.pager.offset(guard.principal, "search_resources", arguments, cursor)
    query = parse_search(resource_type, [*pairs, ("_count", str(count))])
    query = replace(query, offset=offset, total=offset == 0)
    query = plan_query(guard, query)
    page = env.store.search(query)
    matches, withheld = guard.admit_all(page.matches, "s")
    included, _ = guard.admit_all(page.included, "r")
    for item in (*matches, *included):
        trail.touch(item.ref, item.patients)
    filtered = withheld > 0 or not guard.plan(resource_type, "s").unconstrained
    next_cursor = env.pager.next_cursor(guard.principal, "search_resources", arguments, page.next_offset)
    return {
        "resource_type": resource_type,
        "format": fmt,
        "entries": [guard.present(a.stored, fmt, names, mode) for a in matches],
        "included": [guard.present(a.stored, fmt, names, mode) for a in included],
        "page": page_info(len(matches), None if filtered else page.total, next_cursor),
        **guard.notes(),
    }


def read_resource(
    env: Services, guard: Guard, trail: Trail, *, resource_type: str, id: str, fmt: str
) -> dict[str, Any]:
    """One resource by type and id; not found and not permitted look the same to the caller."""
    trail.resource_type = resource_type if isinstance(resource_type, str) else None
    trail.balp_kind = "read"
    check_type(resource_type)
    check_id(id)
    fmt = check_format(fmt)
    guard.plan(resource_type, "r")
    stored = env.store.read(resource_type, id)
    if stored is None:
        raise not_found(resource_type, id)
    decision, patients = guard.check(stored, "r")
    if not decision.allowed:
        trail.masked_denial = decision.reason
        raise not_found(resource_type, id)
    trail.touch(stored.ref, patients)
    return {"ref": stored.ref, "format": fmt, "resource": guard.present(stored, fmt), **guard.notes()}


def not_found(resource_type: str, id: str) -> NotFound:
    """The one error for both a missing resource and one the caller may not see."""
    return NotFound(f"{resource_type}/{id} was not found")
