"""Patient compartment membership: Synthea bundles, and references crafted to sneak into a compartment."""

from __future__ import annotations

from typing import Any

import pytest

from fhirgate.core.fhir import definitions as d
from fhirgate.core.fhir.compartment import in_patient_compartment, patients_of
from fhirgate.core.fhir.extract import extract
from fhirgate.errors import InvalidInput

NO_COMPARTMENT = {rtype for rtype in d.SUPPORTED_TYPES if not d.compartment_params(rtype)}


@pytest.mark.shared
def test_synthea_patient_bundles(synthea: dict[str, list[dict[str, Any]]]) -> None:
    checked = 0
    for name, resources in synthea.items():
        patients = [r for r in resources if r["resourceType"] == "Patient"]
        if not patients:  # hospitalInformation / practitionerInformation: nobody's records
            for r in resources:
                if d.is_supported(r["resourceType"]):
                    assert patients_of(r) == [], (name, r["resourceType"])
            continue
        (patient,) = patients
        pid = patient["id"]
        for r in resources:
            if not d.is_supported(r["resourceType"]):
                continue
            expected = [] if r["resourceType"] in NO_COMPARTMENT else [pid]
            assert patients_of(r) == expected, (name, r["resourceType"], r["id"])
            assert extract(r).patients == expected
            assert in_patient_compartment(r, pid) == bool(expected)
            assert not in_patient_compartment(r, "someone-else")
            checked += 1
    assert checked > 5000


OTHER = "p-victim"


@pytest.mark.parametrize(
    "reference",
    [
        f"https://evil.example/fhir/Patient/{OTHER}",  # another server's Patient with the same id
        f"Patient?identifier=urn:x|{OTHER}",
        f"Patient?_id={OTHER}",
        f"#Patient/{OTHER}",
        f"urn:uuid:{OTHER}",
        f"Group/{OTHER}",
        f"patient/{OTHER}",
        f"Patient/{OTHER}/extra",
        f"Patient/{OTHER}?x=1",
        f"Patient/{OTHER} ",
        f"../Patient/{OTHER}",
        f"Patient//{OTHER}",
    ],
)
def test_crafted_references_do_not_join_a_compartment(reference: str) -> None:
    obs = {"resourceType": "Observation", "id": "o", "subject": {"reference": reference}}
    assert patients_of(obs) == []
    assert extract(obs).patients == []
    assert not in_patient_compartment(obs, OTHER)


def test_only_compartment_params_count() -> None:
    obs = {
        "resourceType": "Observation",
        "id": "o",
        "subject": {"reference": "Patient/a"},
        "focus": [{"reference": f"Patient/{OTHER}"}],  # `focus` is not a compartment param
        "performer": [{"reference": "Patient/b/_history/3"}, {"reference": "Practitioner/c"}],
    }
    assert patients_of(obs) == ["a", "b"]
    assert extract(obs).patients == ["a", "b"]
    enc = {
        "resourceType": "Encounter",
        "id": "e",
        "subject": {"reference": "Patient/a"},
        "participant": [{"individual": {"reference": f"Patient/{OTHER}"}}],
    }
    assert patients_of(enc) == ["a"]
    assert not in_patient_compartment(enc, OTHER)


def test_patient_is_in_its_own_and_linked_compartments() -> None:
    patient: dict[str, Any] = {"resourceType": "Patient", "id": "a", "link": [{"other": {"reference": "Patient/b"}}]}
    assert patients_of(patient) == ["a", "b"]
    assert in_patient_compartment(patient, "a")
    assert not in_patient_compartment({"resourceType": "Patient", "id": "c"}, "a")
    # A Patient's `generalPractitioner` or `managingOrganization` puts nobody else in its compartment.
    patient["managingOrganization"] = {"reference": f"Patient/{OTHER}"}
    assert OTHER not in patients_of(patient)


def test_every_compartment_param_of_every_type_counts() -> None:
    for rtype in d.SUPPORTED_TYPES:
        for code in d.compartment_params(rtype):
            if rtype == "Patient":
                continue
            expression = d.search_params(rtype)[code].expression
            # Build the element the expression reads and check membership follows it.
            path = expression.split(".where(")[0].split(".")[1:]
            node: dict[str, Any] = {"resourceType": rtype, "id": "x"}
            cursor = node
            for part in path[:-1]:
                cursor = cursor.setdefault(part, {})
            cursor[path[-1]] = {"reference": "Patient/z"}
            assert patients_of(node) == ["z"], (rtype, code)
            assert extract(node).patients == ["z"], (rtype, code)


@pytest.mark.parametrize("bad", [{}, {"resourceType": "Group", "id": "g"}, None])
def test_unsupported_input(bad: Any) -> None:
    with pytest.raises(InvalidInput):
        patients_of(bad)
