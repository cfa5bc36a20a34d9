"""The access policy against index rows produced by the real extractor (core.fhir.extract)."""

from __future__ import annotations

from typing import Any

import pytest

from fhirgate.core.policy.access import authorize_resource
from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.scopes import ScopeSet

extract_module = pytest.importorskip("fhirgate.core.fhir.extract")

CAT = "http://terminology.hl7.org/CodeSystem/observation-category"


def observation(oid: str, patient: str, category: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [{"coding": [{"system": CAT, "code": category}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
        "subject": {"reference": f"Patient/{patient}"},
    }


def who(scope: str, patient: str | None = None) -> Principal:
    return Principal(sub="s", issuer="i", scopes=ScopeSet.parse(scope), patient=patient)


@pytest.mark.parametrize(
    ("scope", "resource", "rtype", "allowed", "reason"),
    [
        ("patient/Observation.rs", observation("o1", "p1", "laboratory"), "Observation", True, "scope.granted"),
        ("patient/Observation.rs", observation("o2", "p2", "laboratory"), "Observation", False, "compartment.outside"),
        (f"patient/Observation.rs?category={CAT}|laboratory", observation("o1", "p1", "laboratory"), "Observation",
         True, "scope.granted"),
        (f"patient/Observation.rs?category={CAT}|laboratory", observation("o3", "p1", "vital-signs"), "Observation",
         False, "constraint.unmatched"),
        ("patient/Observation.rs?code=http://loinc.org|718-7", observation("o1", "p1", "laboratory"), "Observation",
         True, "scope.granted"),
        ("patient/Observation.rs?subject=Patient/p1", observation("o1", "p1", "laboratory"), "Observation", False,
         "constraint.unsupported"),
        ("patient/Patient.r", {"resourceType": "Patient", "id": "p1"}, "Patient", True, "scope.granted"),
        ("patient/Patient.r", {"resourceType": "Patient", "id": "p2"}, "Patient", False, "compartment.outside"),
    ],
)  # fmt: skip
def test_authorize_with_extracted_rows(
    scope: str, resource: dict[str, Any], rtype: str, allowed: bool, reason: str
) -> None:
    rows = extract_module.extract(resource)
    decision = authorize_resource(who(scope, patient="p1"), rtype, rows, "r")
    assert decision.allowed is allowed
    assert decision.reason == reason
