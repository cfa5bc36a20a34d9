"""Demo patients: demographics, identifiers, contacts, engagement pattern, and the Patient resource.

A Person is the plan for one patient; every other generator reads it, so clinical data, visits and bills
stay consistent with age, sex, primary clinician and whether the patient still comes in.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

from fhirgate.demo.elements import MRN_SYSTEM, SSN_SYSTEM, V2_0203, Json, coding, concept, ref
from fhirgate.demo.names import (
    EMAIL_DOMAINS,
    FAMILY_NAMES,
    FEMALE_NAMES,
    MALE_NAMES,
    NEUTRAL_NAMES,
    STREETS,
    TOWNS,
)
from fhirgate.demo.practice import ORG_ID, Clinician, Practice

# (low age, high age, weight): a primary-care panel, with a thin tail over 89 (HIPAA Safe Harbor §164.514(b)).
AGE_BANDS = ((0, 4, 6), (5, 17, 14), (18, 34, 19), (35, 49, 18), (50, 64, 21), (65, 79, 15), (80, 89, 5), (90, 99, 1))
ENGAGEMENT = (("active", 66), ("overdue", 12), ("lapsed", 9), ("new", 8), ("inactive", 5))
CONTACT_ROLES = {
    "SPS": "spouse",
    "MTH": "mother",
    "FTH": "father",
    "CHILD": "child",
    "FRND": "friend",
    "SIB": "sibling",
}
MARITAL = {"M": "Married", "S": "Never Married", "D": "Divorced", "W": "Widowed"}


@dataclass(slots=True)
class Person:
    """Everything decided about one patient before their records are generated."""

    index: int
    given: str
    middle: str | None
    family: str
    gender: str
    birth: dt.date
    town: tuple[str, str, str]
    street: str
    phone: str
    email: str | None
    mrn: str
    ssn: str | None
    language: str
    marital: str | None
    pcp: Clinician
    engagement: str
    history_start: dt.date
    last_active: dt.date
    noshow_factor: float
    smoking: str
    payer: str | None
    deceased: dt.date | None = None
    forced: set[str] = field(default_factory=set)

    @property
    def id(self) -> str:
        return f"pat-{self.index:06d}"

    @property
    def name(self) -> str:
        return f"{self.given} {self.family}"

    @property
    def female(self) -> bool:
        return self.gender != "male"

    def age_at(self, day: dt.date) -> int:
        """Completed years of age on `day`."""
        years = day.year - self.birth.year
        return years - ((day.month, day.day) < (self.birth.month, self.birth.day))


def _weighted(rng: random.Random, table: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([k for k, _ in table], weights=[w for _, w in table])[0]


def forced_traits(index: int) -> set[str]:
    """Traits pinned to fixed patient numbers so that even a small demo contains every interesting case."""
    slot = index % 50
    traits = {
        2: {"age90"},
        3: {"hiv"},
        5: {"oud"},
        6: {"aud"},
        7: {"bipolar"},
        9: {"lapsed_high_value"},
        13: {"lapsed_high_value"},
        17: {"ptsd"},
        21: {"depression"},
    }.get(slot, set())
    return set(traits)


def make_person(rng: random.Random, index: int, practice: Practice, today: dt.date) -> Person:
    """Draw one patient's demographics and engagement pattern."""
    forced = forced_traits(index)
    if "age90" in forced:
        age = rng.randint(90, 97)
    elif forced & {"lapsed_high_value"}:
        age = rng.randint(55, 78)
    elif forced:
        age = rng.randint(24, 62)
    else:
        low, high, _ = rng.choices(AGE_BANDS, weights=[b[2] for b in AGE_BANDS])[0]
        age = rng.randint(low, high)
    birth = today - dt.timedelta(days=age * 365 + rng.randint(0, 364) + age // 4)
    roll = rng.random()
    gender = "female" if roll < 0.51 else "male" if roll < 0.995 else "other"
    pool = FEMALE_NAMES if gender == "female" else MALE_NAMES if gender == "male" else NEUTRAL_NAMES
    given = rng.choice(pool)
    middle = rng.choice(pool) if rng.random() < 0.4 else None
    family = rng.choice(FAMILY_NAMES)
    town_name, state, zips, _w = rng.choices(TOWNS, weights=[t[3] for t in TOWNS])[0]
    town = (town_name, state, rng.choice(zips))
    street = f"{rng.randint(100, 9899)} {rng.choice(STREETS)}"
    if rng.random() < 0.15:
        street += f" Apt {rng.randint(1, 24)}"
    phone = f"(217) 555-01{rng.randint(0, 99):02d}"
    email = None
    if age >= 16 and rng.random() < 0.6:
        email = f"{given}.{family}{rng.randint(1, 99)}".lower().replace("'", "") + "@" + rng.choice(EMAIL_DOMAINS)
    ssn = f"9{rng.randint(0, 99):02d}{rng.randint(10, 99)}{rng.randint(1000, 9999)}" if rng.random() < 0.7 else None
    language = "es" if rng.random() < 0.07 else "en"
    marital = None if age < 18 else rng.choice(["M", "M", "S", "D", "W" if age > 60 else "M"])
    pcps = practice.pediatric_pcps() if age < 18 else practice.adult_pcps()
    pcp = pcps[rng.randrange(len(pcps))]
    engagement = "lapsed" if "lapsed_high_value" in forced else _weighted(rng, ENGAGEMENT)
    if age < 1:
        engagement = "new"
    history_days = rng.randint(730, 1460)
    last_active = today
    if engagement == "new":
        history_days = rng.randint(20, min(330, max(20, age * 365 + 20)))
    elif engagement == "overdue":
        last_active = today - dt.timedelta(days=rng.randint(95, 330))
    elif engagement == "lapsed":
        history_days = rng.randint(1000, 1460)
        last_active = today - dt.timedelta(days=rng.randint(400, 700))
    elif engagement == "inactive":
        last_active = today - dt.timedelta(days=rng.randint(180, 640))
    history_start = max(today - dt.timedelta(days=history_days), birth + dt.timedelta(days=5))
    deceased = None
    if engagement == "inactive" and age >= 80 and rng.random() < 0.5:
        deceased = last_active + dt.timedelta(days=rng.randint(10, 120))
    noshow_factor = rng.choice((0.5, 0.8, 1.0, 1.0, 1.0, 1.2, 1.5, 2.5))
    if 18 <= age <= 35:
        noshow_factor *= 1.3
    smoking = "never" if age < 14 else _weighted(rng, (("never", 62), ("former", 24), ("current", 14)))
    payer = _payer(rng, age)
    return Person(
        index,
        given,
        middle,
        family,
        gender,
        birth,
        town,
        street,
        phone,
        email,
        f"{rng.randint(1000000, 9999999)}",
        ssn,
        language,
        marital,
        pcp,
        engagement,
        history_start,
        last_active,
        noshow_factor,
        smoking,
        payer,
        deceased,
        forced,
    )


def _payer(rng: random.Random, age: int) -> str | None:
    roll = rng.random()
    if age >= 65:
        return "medicare" if roll < 0.93 else "lincolnland"
    if roll < 0.18:
        return "medicaid"
    if roll < 0.88:
        return rng.choice(("prairie", "heartland", "lincolnland"))
    return None


def _contact(rng: random.Random, person: Person) -> Json:
    if person.age_at(person.last_active) < 18:
        role = rng.choice(("MTH", "FTH"))
    else:
        role = rng.choice(("SPS", "CHILD", "FRND", "SIB", "SPS"))
    female = role in ("MTH",) or (role not in ("FTH",) and rng.random() < 0.5)
    given = rng.choice(FEMALE_NAMES if female else MALE_NAMES)
    family = person.family if role != "FRND" else rng.choice(FAMILY_NAMES)
    return {
        "relationship": [
            concept("http://terminology.hl7.org/CodeSystem/v2-0131", "C", "Emergency Contact"),
            concept("http://terminology.hl7.org/CodeSystem/v3-RoleCode", role, CONTACT_ROLES[role]),
        ],
        "name": {"use": "usual", "family": family, "given": [given]},
        "telecom": [{"system": "phone", "value": f"(217) 555-01{rng.randint(0, 99):02d}", "use": "mobile"}],
    }


def patient_resource(rng: random.Random, person: Person) -> Json:
    """The Patient resource (FHIR R4 §8.1), with MRN and optional SSN identifiers and an emergency contact."""
    identifiers: list[Json] = [
        {
            "use": "usual",
            "type": concept(V2_0203, "MR", "Medical record number"),
            "system": MRN_SYSTEM,
            "value": person.mrn,
            "assigner": ref("Organization", ORG_ID),
        }
    ]
    if person.ssn:
        identifiers.append(
            {
                "use": "official",
                "type": concept(V2_0203, "SS", "Social Security number"),
                "system": SSN_SYSTEM,
                "value": person.ssn,
            }
        )
    given = [person.given] + ([person.middle] if person.middle else [])
    telecom: list[Json] = [{"system": "phone", "value": person.phone, "use": rng.choice(("home", "mobile"))}]
    if person.email:
        telecom.append({"system": "email", "value": person.email, "use": "home"})
    city, state, zip_code = person.town
    body: Json = {
        "resourceType": "Patient",
        "id": person.id,
        "identifier": identifiers,
        "active": person.engagement != "inactive",
        "name": [{"use": "official", "family": person.family, "given": given}],
        "telecom": telecom,
        "gender": person.gender,
        "birthDate": person.birth.isoformat(),
        "address": [
            {
                "use": "home",
                "type": "physical",
                "line": [person.street],
                "city": city,
                "state": state,
                "postalCode": zip_code,
                "country": "US",
            }
        ],
        "contact": [_contact(rng, person)],
        "communication": [
            {
                "language": {
                    "coding": [
                        coding(
                            "urn:ietf:bcp:47",
                            "es" if person.language == "es" else "en-US",
                            "Spanish" if person.language == "es" else "English (United States)",
                        )
                    ],
                },
                "preferred": True,
            }
        ],
        "generalPractitioner": [ref("Practitioner", person.pcp.id, person.pcp.display)],
        "managingOrganization": ref("Organization", ORG_ID),
    }
    if person.deceased:
        body["deceasedDateTime"] = person.deceased.isoformat()
    if person.marital:
        body["maritalStatus"] = concept(
            "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", person.marital, MARITAL[person.marital]
        )
    return body
