"""The lookup_code use case: which seen-in-data types a caller may use, and the lookup under its standing.

Codes seen in the practice's data are practice-wide facts, so they are offered only for the resource types the
caller may search practice-wide (no patient compartment, no SMART constraints, allowed by its role); a caller
confined to one patient gets the curated synonyms and ICD-10-CM only.
"""

from __future__ import annotations

from typing import Any

from fhirgate.core.policy.access import plan_access
from fhirgate.service.guard import Guard
from fhirgate.terminology.lookup import Terminology
from fhirgate.terminology.seen import VIEWS


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
