"""What the demo practice offers: bookable services with CPT codes and prices, clinician specialties (NUCC) and
staffing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServiceDef:
    """A bookable service of the practice (HealthcareService), with its CPT billing code and price."""

    key: str
    name: str
    cpt: str
    price: float
    minutes: int
    category: str


@dataclass(frozen=True, slots=True)
class SpecialtyDef:
    """A clinician role: NUCC taxonomy code, credential, services offered, base no-show rate."""

    key: str
    nucc: str
    display: str
    credential: str
    services: tuple[str, ...]
    primary_care: bool = False
    behavioral: bool = False


SERVICES: dict[str, ServiceDef] = {
    s.key: s
    for s in (
        ServiceDef("new-patient", "New patient visit", "99203", 185.0, 45, "primary-care"),
        ServiceDef("follow-up", "Established patient follow-up", "99213", 125.0, 20, "primary-care"),
        ServiceDef("chronic-care", "Chronic care visit", "99214", 175.0, 30, "primary-care"),
        ServiceDef("same-day", "Same-day sick visit", "99213", 125.0, 20, "primary-care"),
        ServiceDef("physical-adult", "Annual physical (adult 18-64)", "99396", 245.0, 40, "preventive"),
        ServiceDef("wellness-medicare", "Medicare annual wellness visit", "G0439", 175.0, 40, "preventive"),
        ServiceDef("well-child", "Well-child visit", "99392", 190.0, 30, "preventive"),
        ServiceDef("well-woman", "Well-woman exam", "99395", 225.0, 40, "preventive"),
        ServiceDef("cardiology-consult", "Cardiology consultation", "99204", 260.0, 45, "specialty"),
        ServiceDef("endocrine-visit", "Endocrinology visit", "99214", 190.0, 30, "specialty"),
        ServiceDef("psych-eval", "Psychiatric diagnostic evaluation", "90792", 320.0, 60, "behavioral-health"),
        ServiceDef("med-management", "Psychiatric medication management", "99214", 180.0, 30, "behavioral-health"),
        ServiceDef("psychotherapy", "Psychotherapy, 45 minutes", "90834", 150.0, 45, "behavioral-health"),
        ServiceDef("nurse-visit", "Nurse visit (immunization)", "99211", 45.0, 15, "primary-care"),
    )
}

SERVICE_CATEGORIES: dict[str, str] = {
    "primary-care": "Primary care",
    "preventive": "Preventive care",
    "specialty": "Specialty care",
    "behavioral-health": "Behavioral health",
}

SPECIALTIES: dict[str, SpecialtyDef] = {
    s.key: s
    for s in (
        SpecialtyDef(
            "family",
            "207Q00000X",
            "Family Medicine",
            "MD",
            (
                "new-patient",
                "follow-up",
                "chronic-care",
                "same-day",
                "physical-adult",
                "wellness-medicare",
                "well-child",
                "well-woman",
            ),
            primary_care=True,
        ),
        SpecialtyDef(
            "internal",
            "207R00000X",
            "Internal Medicine",
            "MD",
            ("new-patient", "follow-up", "chronic-care", "same-day", "physical-adult", "wellness-medicare"),
            primary_care=True,
        ),
        SpecialtyDef(
            "pediatrics",
            "208000000X",
            "Pediatrics",
            "MD",
            ("new-patient", "follow-up", "same-day", "well-child"),
            primary_care=True,
        ),
        SpecialtyDef(
            "np",
            "363LF0000X",
            "Nurse Practitioner, Family",
            "NP",
            ("new-patient", "follow-up", "chronic-care", "same-day", "physical-adult", "well-woman", "nurse-visit"),
            primary_care=True,
        ),
        SpecialtyDef(
            "pa", "363A00000X", "Physician Assistant", "PA", ("follow-up", "same-day", "nurse-visit"), primary_care=True
        ),
        SpecialtyDef("obgyn", "207V00000X", "Obstetrics & Gynecology", "MD", ("well-woman", "follow-up")),
        SpecialtyDef("cardiology", "207RC0000X", "Cardiovascular Disease", "MD", ("cardiology-consult",)),
        SpecialtyDef("endocrinology", "207RE0101X", "Endocrinology, Diabetes & Metabolism", "MD", ("endocrine-visit",)),
        SpecialtyDef("psychiatry", "2084P0800X", "Psychiatry", "MD", ("psych-eval", "med-management"), behavioral=True),
        SpecialtyDef("counseling", "1041C0700X", "Clinical Social Worker", "LCSW", ("psychotherapy",), behavioral=True),
    )
}

# The clinician mix: the first ten make the smallest practice; larger practices cycle through the rest.
STAFFING: tuple[str, ...] = (
    "family",
    "internal",
    "pediatrics",
    "np",
    "family",
    "psychiatry",
    "counseling",
    "cardiology",
    "endocrinology",
    "obgyn",
    "family",
    "internal",
    "pa",
    "np",
    "pediatrics",
    "family",
    "counseling",
    "internal",
    "family",
    "np",
    "psychiatry",
    "pa",
    "family",
    "internal",
    "cardiology",
    "pediatrics",
    "family",
    "np",
    "obgyn",
    "internal",
)
