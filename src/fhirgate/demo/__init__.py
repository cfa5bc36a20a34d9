"""Deterministic synthetic demo practice: a small US multi-specialty clinic as FHIR R4 resources.

Systems and extensions defined by fhirgate for the demo:
    http://fhirgate.dev/fhir/sid/mrn                                 Patient MRN (identifier type v2-0203 MR)
    http://fhirgate.dev/fhir/StructureDefinition/service-price       HealthcareService price (valueMoney, USD)
    http://fhirgate.dev/fhir/CodeSystem/service                      service codes (HealthcareService.type,
                                                                     Appointment.serviceType; CPT alongside)
    http://fhirgate.dev/fhir/CodeSystem/service-category             service categories
    http://fhirgate.dev/fhir/sid/payer-id, member-id, claim-number, location   other identifiers
Standard systems: us-npi, us-ssn (fake 9xx numbers), ICD-10-CM, SNOMED CT, LOINC, UCUM, RxNorm, CVX, NUCC, CPT.
"""

from fhirgate.demo.generator import DemoSummary, PracticeGenerator, generate_practice, write_practice

__all__ = ["DemoSummary", "PracticeGenerator", "generate_practice", "write_practice"]
