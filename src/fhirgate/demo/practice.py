"""The demo practice itself: Organization, Locations, clinicians, services with prices, payers and Schedules.

Built once per run from the seed; patients then refer to it by id.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

from fhirgate.demo.elements import (
    CPT,
    LOCATION_ID_SYSTEM,
    NPI_SYSTEM,
    NUCC,
    PAYER_ID_SYSTEM,
    PRICE_EXTENSION,
    SERVICE_CATEGORY_SYSTEM,
    SERVICE_SYSTEM,
    Json,
    coding,
    concept,
    instant,
    money,
    ref,
)
from fhirgate.demo.names import FAMILY_NAMES, FEMALE_NAMES, LOCATIONS, MALE_NAMES, PAYERS, PRACTICE_NAME
from fhirgate.demo.offerings import SERVICE_CATEGORIES, SERVICES, SPECIALTIES, STAFFING, ServiceDef, SpecialtyDef

ORG_ID = "org-riverbend"
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
# Base no-show rates spread across clinicians so that per-provider reports have a real answer.
NOSHOW_LOW, NOSHOW_HIGH = 0.03, 0.20


@dataclass(slots=True)
class Clinician:
    """One practitioner with their role, schedule, home location and personal no-show rate."""

    index: int
    given: str
    family: str
    gender: str
    specialty: SpecialtyDef
    npi: str
    location: int
    noshow_rate: float

    @property
    def id(self) -> str:
        return f"prac-{self.index:03d}"

    @property
    def role_id(self) -> str:
        return f"role-{self.index:03d}"

    @property
    def schedule_id(self) -> str:
        return f"sched-{self.index:03d}"

    @property
    def display(self) -> str:
        prefix = "Dr. " if self.specialty.credential == "MD" else ""
        return f"{prefix}{self.given} {self.family}, {self.specialty.credential}"


@dataclass(slots=True)
class Practice:
    """The practice-level facts every patient generator needs."""

    clinicians: list[Clinician]
    by_specialty: dict[str, list[Clinician]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for c in self.clinicians:
            self.by_specialty.setdefault(c.specialty.key, []).append(c)

    def adult_pcps(self) -> list[Clinician]:
        return [c for c in self.clinicians if c.specialty.primary_care and c.specialty.key != "pediatrics"]

    def pediatric_pcps(self) -> list[Clinician]:
        return self.by_specialty.get("pediatrics") or [
            c for c in self.clinicians if c.specialty.key in ("family", "np")
        ]


def location_id(index: int) -> str:
    """The id of the practice location at `index`."""
    return f"loc-{LOCATIONS[index][0]}"


def service_id(key: str) -> str:
    """The HealthcareService id for a service key."""
    return f"svc-{key}"


def payer_id(key: str) -> str:
    """The payer Organization id for a payer key."""
    return f"org-payer-{key}"


def service_concept(service: ServiceDef) -> Json:
    """The CodeableConcept naming a service: practice code plus its CPT billing code."""
    return {
        "coding": [coding(SERVICE_SYSTEM, service.key, service.name), coding(CPT, service.cpt)],
        "text": service.name,
    }


def category_concept(key: str) -> Json:
    """The service-category CodeableConcept shared by HealthcareService and Appointment."""
    return concept(SERVICE_CATEGORY_SYSTEM, key, SERVICE_CATEGORIES[key])


def specialty_concept(spec: SpecialtyDef) -> Json:
    """The NUCC taxonomy CodeableConcept for a specialty."""
    return concept(NUCC, spec.nucc, spec.display)


def npi_number(rng: random.Random) -> str:
    """A 10-digit NPI with a valid Luhn check digit (CMS NPI standard: prefix 80840 in the check)."""
    body = "1" + "".join(str(rng.randrange(10)) for _ in range(8))
    total = 0
    for i, ch in enumerate(reversed("80840" + body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return body + str((10 - total % 10) % 10)


def build_practice(patients: int, seed: int) -> Practice:
    """The practice for a run: 10 clinicians for small demos, up to 30 for large ones."""
    rng = random.Random(f"{seed}:practice")  # noqa: S311 - synthetic data, determinism wanted
    count = max(10, min(30, 10 + patients // 25))
    rates = [NOSHOW_LOW + (NOSHOW_HIGH - NOSHOW_LOW) * k / (count - 1) for k in range(count)]
    rng.shuffle(rates)
    clinicians = []
    for i in range(count):
        spec = SPECIALTIES[STAFFING[i]]
        gender = rng.choice(("female", "male"))
        given = rng.choice(FEMALE_NAMES if gender == "female" else MALE_NAMES)
        location = 0 if spec.behavioral else i % len(LOCATIONS)
        clinicians.append(
            Clinician(i, given, rng.choice(FAMILY_NAMES), gender, spec, npi_number(rng), location, rates[i])
        )
    return Practice(clinicians)


def _address(street: str, city: str, zip_code: str) -> Json:
    return {"use": "work", "line": [street], "city": city, "state": "IL", "postalCode": zip_code, "country": "US"}


def _hours() -> list[Json]:
    return [{"daysOfWeek": WEEKDAYS, "availableStartTime": "08:00:00", "availableEndTime": "17:00:00"}]


def practice_resources(practice: Practice, today: dt.date) -> list[Json]:
    """Organization, payers, Locations, HealthcareServices, Practitioners, PractitionerRoles and Schedules."""
    out: list[Json] = [
        {
            "resourceType": "Organization",
            "id": ORG_ID,
            "identifier": [{"system": NPI_SYSTEM, "value": npi_number(random.Random("org"))}],  # noqa: S311
            "active": True,
            "type": [concept("http://terminology.hl7.org/CodeSystem/organization-type", "prov", "Healthcare Provider")],
            "name": PRACTICE_NAME,
            "telecom": [{"system": "phone", "value": "(217) 555-0100", "use": "work"}],
            "address": [_address(*LOCATIONS[0][2:])],
        }
    ]
    for key, name, sopt_code, sopt_display in PAYERS:
        out.append(
            {
                "resourceType": "Organization",
                "id": payer_id(key),
                "identifier": [{"system": PAYER_ID_SYSTEM, "value": key.upper()}],
                "active": True,
                "type": [concept("http://terminology.hl7.org/CodeSystem/organization-type", "pay", "Payer")],
                "name": name,
                "alias": [f"SOPT {sopt_code} {sopt_display.title()}"],
            }
        )
    for i, (_key, name, street, city, zip_code) in enumerate(LOCATIONS):
        out.append(
            {
                "resourceType": "Location",
                "id": location_id(i),
                "identifier": [{"system": LOCATION_ID_SYSTEM, "value": f"RFH-{i + 1:02d}"}],
                "status": "active",
                "name": name,
                "mode": "instance",
                "type": [concept("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "OF", "Outpatient facility")],
                "telecom": [{"system": "phone", "value": f"(217) 555-01{i + 1:02d}", "use": "work"}],
                "address": _address(street, city, zip_code),
                "managingOrganization": ref("Organization", ORG_ID),
                "hoursOfOperation": [{"daysOfWeek": WEEKDAYS, "openingTime": "08:00:00", "closingTime": "17:00:00"}],
            }
        )
    offered: dict[str, list[SpecialtyDef]] = {}
    for c in practice.clinicians:
        for key in c.specialty.services:
            if c.specialty not in offered.setdefault(key, []):
                offered[key].append(c.specialty)
    for key, service in SERVICES.items():
        out.append(
            {
                "resourceType": "HealthcareService",
                "id": service_id(key),
                "extension": [{"url": PRICE_EXTENSION, "valueMoney": money(service.price)}],
                "active": True,
                "providedBy": ref("Organization", ORG_ID),
                "category": [category_concept(service.category)],
                "type": [service_concept(service)],
                "specialty": [specialty_concept(s) for s in offered.get(key, [])],
                "location": [ref("Location", location_id(i)) for i in range(len(LOCATIONS))],
                "name": service.name,
                "comment": f"{service.minutes} minutes; self-pay price ${service.price:.2f} (CPT {service.cpt})",
                "appointmentRequired": True,
                "availableTime": _hours(),
            }
        )
    horizon_end = today + dt.timedelta(days=28)
    for c in practice.clinicians:
        out.append(_practitioner(c))
        out.append(
            {
                "resourceType": "PractitionerRole",
                "id": c.role_id,
                "active": True,
                "practitioner": ref("Practitioner", c.id, c.display),
                "organization": ref("Organization", ORG_ID),
                "code": [_role_code(c)],
                "specialty": [specialty_concept(c.specialty)],
                "location": [ref("Location", location_id(c.location))],
                "healthcareService": [ref("HealthcareService", service_id(k)) for k in c.specialty.services],
                "availableTime": _hours(),
            }
        )
        out.append(
            {
                "resourceType": "Schedule",
                "id": c.schedule_id,
                "active": True,
                "serviceCategory": [category_concept(SERVICES[c.specialty.services[0]].category)],
                "serviceType": [service_concept(SERVICES[k]) for k in c.specialty.services],
                "specialty": [specialty_concept(c.specialty)],
                "actor": [ref("Practitioner", c.id, c.display), ref("Location", location_id(c.location))],
                "planningHorizon": {
                    "start": instant(dt.datetime.combine(today, dt.time(0, 0))),
                    "end": instant(dt.datetime.combine(horizon_end, dt.time(23, 59))),
                },
            }
        )
    return out


def _role_code(c: Clinician) -> Json:
    if c.specialty.credential == "LCSW":
        return {"text": "Licensed clinical social worker"}
    code, display = ("nurse", "Nurse") if c.specialty.credential == "NP" else ("doctor", "Doctor")
    return concept("http://terminology.hl7.org/CodeSystem/practitioner-role", code, display)


def _practitioner(c: Clinician) -> Json:
    name: Json = {"use": "official", "family": c.family, "given": [c.given], "suffix": [c.specialty.credential]}
    if c.specialty.credential == "MD":
        name["prefix"] = ["Dr."]
    email = f"{c.given}.{c.family}".lower().replace("'", "") + "@riverbend.example.org"
    return {
        "resourceType": "Practitioner",
        "id": c.id,
        "identifier": [{"system": NPI_SYSTEM, "value": c.npi}],
        "active": True,
        "name": [name],
        "telecom": [
            {"system": "phone", "value": f"(217) 555-01{10 + c.index:02d}", "use": "work"},
            {"system": "email", "value": email, "use": "work"},
        ],
        "gender": c.gender,
        "qualification": [{"code": {"text": c.specialty.credential}}],
    }
