"""The FHIR R4 search parameters and Patient compartment rules fhirgate supports, loaded once from JSON.

The JSON under definitions/ is generated from the official R4 SearchParameter Bundle and
CompartmentDefinition/patient by tools/gen_fhir_definitions.py (FHIR R4 §3.1.1, §3.2.0). Shared
expressions are narrowed to each type, so `clinical-code` on Condition reads only `Condition.code`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any

from fhirgate.errors import InvalidInput

SUPPORTED_TYPES: tuple[str, ...] = (
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
    "HealthcareService",
    "Schedule",
    "Slot",
    "Appointment",
    "Encounter",
    "Condition",
    "Observation",
    "MedicationRequest",
    "Medication",
    "AllergyIntolerance",
    "Immunization",
    "Procedure",
    "DiagnosticReport",
    "DocumentReference",
    "CarePlan",
    "CareTeam",
    "Claim",
    "ExplanationOfBenefit",
    "Coverage",
    "Invoice",
    "Consent",
    "Provenance",
)
_SUPPORTED = frozenset(SUPPORTED_TYPES)

# Parameters a store answers from its own columns rather than from extracted rows: the id is the
# row key and meta.lastUpdated is assigned by the store at write time (FHIR R4 §3.1.1.2).
STORE_NATIVE_PARAMS: frozenset[str] = frozenset({"_id", "_lastUpdated"})


@dataclass(frozen=True, slots=True)
class SearchParamDef:
    """One search parameter of one resource type, with its expression narrowed to that type."""

    resource_type: str
    code: str
    type: str  # token|string|date|reference|quantity|number|uri|special
    expression: str
    targets: tuple[str, ...]
    modifiers: tuple[str, ...]  # R4 lists none per parameter: the ones FHIR defines for the type (§3.1.1.5)
    comparators: tuple[str, ...]  # eq ne gt ge lt le sa eb ap for date, number, quantity


def _read(name: str) -> dict[str, Any]:
    text = resources.files("fhirgate.core.fhir").joinpath("definitions", name).read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@cache
def _tables() -> tuple[
    dict[str, Mapping[str, SearchParamDef]],
    dict[str, Mapping[str, tuple[str, ...]]],
    dict[str, tuple[str, ...]],
]:
    """(params by type, choice elements by type, compartment params by type), built once."""
    params_doc = _read("searchparams.json")["types"]
    comp_doc = _read("compartment_patient.json")["types"]
    params: dict[str, Mapping[str, SearchParamDef]] = {}
    choices: dict[str, Mapping[str, tuple[str, ...]]] = {}
    for rtype in SUPPORTED_TYPES:
        entry = params_doc[rtype]
        params[rtype] = MappingProxyType(
            {
                code: SearchParamDef(
                    resource_type=rtype,
                    code=code,
                    type=p["type"],
                    expression=p["expression"],
                    targets=tuple(p["targets"]),
                    modifiers=tuple(p["modifiers"]),
                    comparators=tuple(p["comparators"]),
                )
                for code, p in sorted(entry["params"].items())
            }
        )
        choices[rtype] = MappingProxyType({k: tuple(v) for k, v in entry["choices"].items()})
    compartments = {rtype: tuple(comp_doc.get(rtype, ())) for rtype in SUPPORTED_TYPES}
    return params, choices, compartments


def is_supported(resource_type: str) -> bool:
    """Whether fhirgate stores and searches this resource type."""
    return resource_type in _SUPPORTED


def _check(resource_type: str) -> None:
    if resource_type not in _SUPPORTED:
        raise InvalidInput("resourceType", "unsupported resource type", allowed=", ".join(SUPPORTED_TYPES))


def search_params(resource_type: str) -> Mapping[str, SearchParamDef]:
    """Every search parameter of a supported type, by code (composite parameters are not supported)."""
    _check(resource_type)
    return _tables()[0][resource_type]


def search_param(resource_type: str, code: str) -> SearchParamDef | None:
    """One search parameter, or None when the type has no parameter with that code."""
    return search_params(resource_type).get(code)


def choice_elements(resource_type: str) -> Mapping[str, tuple[str, ...]]:
    """Choice elements the type's expressions reach, e.g. "Observation.value" → ("Quantity", ...)."""
    _check(resource_type)
    return _tables()[1][resource_type]


def compartment_params(resource_type: str) -> tuple[str, ...]:
    """Reference params that put a resource of this type in a Patient compartment (FHIR R4 §3.2.0).

    A Patient is also in its own compartment by id; `link` adds the compartments of linked Patients.
    """
    _check(resource_type)
    return _tables()[2][resource_type]
