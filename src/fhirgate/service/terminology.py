"""The lookup_code use case's parts: one Terminology per gateway, and which seen-in-data types a caller may use.

Codes seen in the practice's data are practice-wide facts, so they are offered only for the resource types the
caller may search practice-wide (no patient compartment, no SMART constraints, allowed by its role); a caller
confined to one patient gets the curated synonyms and ICD-10-CM only.
"""

from __future__ import annotations

import threading
from typing import Any

from fhirgate.core.policy.access import plan_access
from fhirgate.service.guard import Guard
from fhirgate.store.contract import FhirStore
from fhirgate.terminology.lookup import Terminology
from fhirgate.terminology.seen import VIEWS

_lock = threading.Lock()
_ATTRIBUTE = "_terminology"


def terminology_of(owner: object, store: FhirStore) -> Terminology:
    """The Terminology cached on `owner` (the Gateway), built over `store` on first use."""
    with _lock:
        found: Terminology | None = getattr(owner, _ATTRIBUTE, None)
        if found is None:
            found = Terminology.for_store(store)
            setattr(owner, _ATTRIBUTE, found)
        return found


def seen_types(guard: Guard) -> frozenset[str]:
    """The resource types whose seen codes this caller may be told about (searchable practice-wide)."""
    allowed: set[str] = set()
    for _, rtype in VIEWS:
        if not guard.may(rtype, "s"):
            continue
        plan = plan_access(guard.principal, rtype, "s")
        if plan.allowed and plan.compartment is None and plan.unconstrained:
            allowed.add(rtype)
    return frozenset(allowed)


def lookup_code(
    terminology: Terminology, guard: Guard, *, text: Any, code: Any, system: Any, limit: Any
) -> dict[str, Any]:
    """One lookup under the caller's standing; the result touches no patient."""
    result = terminology.lookup(text=text, code=code, system=system, limit=limit, seen_types=seen_types(guard))
    return result.to_dict()
