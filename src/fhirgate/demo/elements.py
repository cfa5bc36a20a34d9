"""Small builders for FHIR R4 data types (Coding, CodeableConcept, Reference, Money, dateTime) used by the demo.

Kept in one place so every generated resource spells systems, references and timestamps the same way.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

Json = dict[str, Any]

# Code systems (FHIR R4 terminology pages; US-specific systems from US Core 3.1.1 §terminology).
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
UCUM = "http://unitsofmeasure.org"
CPT = "http://www.ama-assn.org/go/cpt"
NUCC = "http://nucc.org/provider-taxonomy"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
SSN_SYSTEM = "http://hl7.org/fhir/sid/us-ssn"
SOPT = "https://nahdo.org/sopt"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
V3_ACTCODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
V3_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"

# fhirgate's own systems for the demo practice (documented in the demo package docstring).
MRN_SYSTEM = "http://fhirgate.dev/fhir/sid/mrn"
SERVICE_SYSTEM = "http://fhirgate.dev/fhir/CodeSystem/service"
SERVICE_CATEGORY_SYSTEM = "http://fhirgate.dev/fhir/CodeSystem/service-category"
PRICE_EXTENSION = "http://fhirgate.dev/fhir/StructureDefinition/service-price"
PAYER_ID_SYSTEM = "http://fhirgate.dev/fhir/sid/payer-id"
MEMBER_ID_SYSTEM = "http://fhirgate.dev/fhir/sid/member-id"
CLAIM_ID_SYSTEM = "http://fhirgate.dev/fhir/sid/claim-number"
LOCATION_ID_SYSTEM = "http://fhirgate.dev/fhir/sid/location"


def coding(system: str, code: str, display: str | None = None) -> Json:
    """A Coding; display omitted when not known."""
    out: Json = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def concept(system: str, code: str, display: str, text: str | None = None) -> Json:
    """A CodeableConcept with one coding and a text (defaults to the display)."""
    return {"coding": [coding(system, code, display)], "text": text or display}


def ref(resource_type: str, id: str, display: str | None = None) -> Json:
    """A relative Reference `Type/id` (FHIR R4 §2.3.0 literal references)."""
    out: Json = {"reference": f"{resource_type}/{id}"}
    if display:
        out["display"] = display
    return out


def money(value: float) -> Json:
    """A Money in US dollars, rounded to cents."""
    return {"value": round(value, 2), "currency": "USD"}


def quantity(value: float, unit: str, code: str | None = None) -> Json:
    """A UCUM Quantity; `code` defaults to `unit`."""
    return {"value": value, "unit": unit, "system": UCUM, "code": code or unit}


def _nth_sunday(year: int, month: int, n: int) -> dt.date:
    first = dt.date(year, month, 1)
    first_sunday = first + dt.timedelta(days=(6 - first.weekday()) % 7)
    return first_sunday + dt.timedelta(weeks=n - 1)


@functools.lru_cache(maxsize=512)
def _dst_bounds(year: int) -> tuple[dt.date, dt.date]:
    return _nth_sunday(year, 3, 2), _nth_sunday(year, 11, 1)


def central_offset(day: dt.date) -> str:
    """The US Central time UTC offset on a day (DST from the 2nd Sunday of March to the 1st of November).

    Computed by rule, not from tzdata, so output never depends on the machine's zone database.
    """
    begin, end = _dst_bounds(day.year)
    return "-05:00" if begin <= day < end else "-06:00"


def instant(m: dt.datetime) -> str:
    """A FHIR dateTime/instant with seconds and the practice's local offset (FHIR R4 §2.24.0.1 instant)."""
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}{central_offset(m.date())}"
    )


def security(*labels: tuple[str, str, str]) -> Json:
    """A meta element carrying security labels given as (system, code, display)."""
    return {"security": [coding(s, c, d) for s, c, d in labels]}


# Security labels (FHIR R4 §8.1 security-labels; HL7 v3 Confidentiality and ActCode sensitivity/policy codes).
LABEL_R = (V3_CONFIDENTIALITY, "R", "restricted")
LABEL_ETH = (V3_ACTCODE, "ETH", "substance abuse information sensitivity")
LABEL_PSY = (V3_ACTCODE, "PSY", "psychiatry disorder information sensitivity")
LABEL_HIV = (V3_ACTCODE, "HIV", "HIV/AIDS information sensitivity")
LABEL_42CFR = (V3_ACTCODE, "42CFRPart2", "42 CFR Part2")
LABEL_NORDSCLCD = (V3_ACTCODE, "NORDSCLCD", "no redisclosure without consent directive")
SUD_LABELS = (LABEL_R, LABEL_ETH, LABEL_42CFR, LABEL_NORDSCLCD)
HIV_LABELS = (LABEL_R, LABEL_HIV)
PSY_LABELS = (LABEL_R, LABEL_PSY)
