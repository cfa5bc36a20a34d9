"""Helpers for terminology tests: hand-made Conditions, principals, request contexts, raw-resource filters."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.scopes import ScopeSet
from fhirgate.service.context import RequestContext
from fhirgate.store.contract import FhirStore

ICD = "http://hl7.org/fhir/sid/icd-10-cm"


def _condition(id_: str, code: str, display: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": id_,
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
        },
        "code": {"coding": [{"system": ICD, "code": code, "display": display}], "text": display},
        "recordedDate": "2025-05-01",
    }


# S72 has 2,659 descendants (the prefix path); "E119" is undotted (matched by neither path, by design);
# E10.9 is type 1 diabetes (must not appear below E11).
EXTRA_CONDITIONS = [
    _condition("term-s72", "S72.001A", "Fracture of unspecified part of neck of right femur, initial encounter"),
    _condition("term-s72b", "S72.92XA", "Unspecified fracture of left femur, initial encounter"),
    _condition("term-e10", "E10.9", "Type 1 diabetes mellitus without complications"),
    _condition("term-undotted", "E119", "Type 2 diabetes mellitus without complications"),
]


def who(scope: str = "user/*.rs", *, role: str | None = None, patient: str | None = None) -> Principal:
    return Principal(
        sub="term-test",
        issuer="urn:test",
        scopes=ScopeSet.parse(scope),
        client_id="tests",
        patient=patient,
        role=role,
    )


def ctx(p: Principal) -> RequestContext:
    return RequestContext(p, transport="in-memory", method="tools/call", name="lookup_code")


def codings(body: dict[str, Any], element: str = "code") -> Iterable[tuple[str | None, str | None]]:
    for coding in (body.get(element) or {}).get("coding", []):
        yield coding.get("system"), coding.get("code")


def ids_with_codes(store: FhirStore, rtype: str, system: str, codes: set[str]) -> set[str]:
    """Independent filter over the raw resources: ids with a coding (system, code in codes)."""
    return {r.id for r in store.iter_type(rtype) if any(s == system and c in codes for s, c in codings(r.body))}
