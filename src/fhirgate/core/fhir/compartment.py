"""Patient compartment membership of a resource (FHIR R4 §3.2.0, CompartmentDefinition/patient).

A resource is in Patient/X's compartment when one of its type's compartment search parameters
refers to Patient/X. Only relative references count: an absolute URL may name another server's
Patient with the same id, and a conditional or `urn:` reference names no stored patient yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

from fhirgate.core.fhir.definitions import choice_elements, compartment_params, is_supported, search_params
from fhirgate.core.fhir.pathexpr import Evaluator, compile_expression, local_reference
from fhirgate.errors import InvalidInput


def compartment_ids(resource_type: str, resource_id: Any, references: Iterable[str]) -> list[str]:
    """Patient ids named by `references` (values of the type's compartment params), sorted.

    A Patient's own id comes first: it is always in its own compartment.
    """
    found: set[str] = set()
    for ref in references:
        local = local_reference(ref)
        if local is not None and local[0] == "Patient":
            found.add(local[1])
    own = resource_id if resource_type == "Patient" and type(resource_id) is str and resource_id else None
    if own is None:
        return sorted(found)
    found.discard(own)
    return [own, *sorted(found)]


@cache
def _evaluators(resource_type: str) -> tuple[Evaluator, ...]:
    """Compiled expressions of the type's compartment params (only Patient.link for a Patient)."""
    params = search_params(resource_type)
    choices = choice_elements(resource_type)
    return tuple(
        compile_expression(params[c].expression, resource_type, choices).evaluate
        for c in compartment_params(resource_type)
    )


def _resource_type(resource: Any) -> str:
    rtype = resource.get("resourceType") if type(resource) is dict else None
    if type(rtype) is not str or not is_supported(rtype):
        raise InvalidInput("resourceType", "missing or unsupported resource type")
    return rtype


def patients_of(resource: dict[str, Any]) -> list[str]:
    """Ids of the Patients whose compartment holds this resource (a Patient's own id first)."""
    rtype = _resource_type(resource)
    refs: list[str] = []
    for evaluate in _evaluators(rtype):
        for value in evaluate(resource):
            ref = value.get("reference") if type(value) is dict else None
            if type(ref) is str:
                refs.append(ref)
    return compartment_ids(rtype, resource.get("id"), refs)


def in_patient_compartment(resource: dict[str, Any], patient_id: str) -> bool:
    """Whether the resource belongs to Patient/patient_id's compartment."""
    return patient_id in patients_of(resource)
