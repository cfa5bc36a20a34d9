"""A small clinical data set whose search results are known exactly (used by the contract suite)."""

from __future__ import annotations

from typing import Any

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
NPI = "http://hl7.org/fhir/sid/us-npi"
VITALS = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-vital-signs"


def resources() -> list[dict[str, Any]]:
    """Two patients, a practitioner, an encounter and five observations."""
    return [
        {
            "resourceType": "Patient",
            "id": "p1",
            "identifier": [{"system": "urn:mrn", "value": "MRN1"}],
            "name": [{"family": "Chalmers", "given": ["Peter", "Zoë"]}],
            "gender": "male",
            "birthDate": "1974-12-25",
            "generalPractitioner": [{"reference": "Practitioner/dr1"}],
        },
        {
            "resourceType": "Patient",
            "id": "p2",
            "name": [{"family": "Smith", "given": ["Anna"]}],
            "gender": "female",
            "birthDate": "1990-03",
        },
        {
            "resourceType": "Practitioner",
            "id": "dr1",
            "identifier": [{"system": NPI, "value": "999"}],
            "name": [{"family": "House", "given": ["Gregory"]}],
        },
        {
            "resourceType": "Encounter",
            "id": "e1",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": "Patient/p1"},
            "period": {"start": "2020-03-04T09:00:00Z", "end": "2020-03-04T11:00:00Z"},
        },
        {
            "resourceType": "Observation",
            "id": "o1",
            "meta": {"profile": [VITALS]},
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}], "text": "Heart rate"},
            "subject": {"reference": "Patient/p1"},
            "encounter": {"reference": "Encounter/e1"},
            "performer": [{"reference": "Practitioner/dr1"}],
            "effectiveDateTime": "2020-03-04T10:00:00Z",
            "valueQuantity": {"value": 72, "unit": "/min", "system": UCUM, "code": "/min"},
        },
        {
            "resourceType": "Observation",
            "id": "o2",
            "status": "preliminary",
            "code": {"coding": [{"system": LOINC, "code": "29463-7", "display": "Body weight"}]},
            "subject": {"reference": "Patient/p2"},
            "effectivePeriod": {"start": "2021-01-01", "end": "2021-01-31"},
            "valueQuantity": {"value": 70.5, "unit": "kg", "system": UCUM, "code": "kg"},
        },
        {
            "resourceType": "Observation",
            "id": "o3",
            "status": "final",
            "code": {"coding": [{"system": "http://acme.org/codes", "code": "ABC-123"}]},
            "subject": {"reference": "Patient/p1"},
            "performer": [{"reference": "http://other.org/fhir/Practitioner/x9"}],
            "effectiveDateTime": "2019",
        },
        {
            # In p1's and p2's compartments: subject p1, performer p2.
            "resourceType": "Observation",
            "id": "o5",
            "status": "amended",
            "code": {"coding": [{"system": LOINC, "code": "1234-5"}]},
            "subject": {"reference": "Patient/p1"},
            "performer": [{"reference": "Patient/p2"}],
        },
    ]
