"""Coverage, and one Claim (insured) or Invoice (self-pay) per visit, priced from the practice's service list.

Line amounts come from the same catalog as the HealthcareService price extension, so revenue reports add up.
"""

from __future__ import annotations

import datetime as dt
import random

from fhirgate.demo.chart import Chart, EncounterFacts
from fhirgate.demo.elements import (
    CLAIM_ID_SYSTEM,
    CPT,
    ICD10CM,
    MEMBER_ID_SYSTEM,
    SOPT,
    Json,
    concept,
    instant,
    money,
    ref,
    security,
)
from fhirgate.demo.names import PAYERS
from fhirgate.demo.orders import PANELS, PROCEDURES, VACCINE_ADMIN, VENIPUNCTURE
from fhirgate.demo.practice import ORG_ID, location_id, payer_id

PAYER_INFO = {key: (name, code, display) for key, name, code, display in PAYERS}


def coverage_id(chart: Chart) -> str:
    """The id of the patient's Coverage."""
    return f"cov-{chart.person.index:06d}"


def coverage(rng: random.Random, chart: Chart) -> list[Json]:
    """The patient's insurance Coverage, or nothing for self-pay patients."""
    p = chart.person
    if p.payer is None:
        return []
    name, sopt, sopt_display = PAYER_INFO[p.payer]
    child = p.age_at(p.last_active) < 18
    member = f"{p.payer[:3].upper()}{rng.randint(100000000, 999999999)}"
    body: Json = {
        "resourceType": "Coverage",
        "id": coverage_id(chart),
        "identifier": [{"system": MEMBER_ID_SYSTEM, "value": member}],
        "status": "active" if p.engagement != "inactive" else "cancelled",
        "type": concept(SOPT, sopt, sopt_display),
        "subscriberId": member,
        "beneficiary": ref("Patient", p.id),
        "relationship": concept(
            "http://terminology.hl7.org/CodeSystem/subscriber-relationship",
            "child" if child else "self",
            "Child" if child else "Self",
        ),
        "period": {"start": (p.history_start - dt.timedelta(days=rng.randint(30, 2000))).isoformat()},
        "payor": [ref("Organization", payer_id(p.payer), name)],
        "class": [
            {
                "type": concept("http://terminology.hl7.org/CodeSystem/coverage-class", "group", "Group"),
                "value": f"GRP-{rng.randint(1000, 9999)}",
                "name": name,
            }
        ],
    }
    if not child:
        body["subscriber"] = ref("Patient", p.id)
    return [body]


def charge_lines(f: EncounterFacts) -> list[tuple[str, str, float]]:
    """(CPT code, description, amount) for everything billable at the visit."""
    s = f.visit.service
    lines = [(s.cpt, s.name, s.price)]
    for panel in f.panels:
        pd = PANELS[panel]
        lines.append((pd.cpt, pd.display, pd.price))
    if f.panels:
        lines.append(VENIPUNCTURE)
    for key in f.procedures:
        d = PROCEDURES[key]
        if d.cpt:
            lines.append((d.cpt, d.display, d.price))
    lines += [VACCINE_ADMIN] * len(f.vaccines)
    return lines


def bill(chart: Chart, f: EncounterFacts, diagnoses: list[tuple[str, str]]) -> tuple[Json, float]:
    """A Claim when the patient is insured, else an Invoice; returns it with the billed total."""
    lines = charge_lines(f)
    total = round(sum(amount for _, _, amount in lines), 2)
    p, v = chart.person, f.visit
    served = f.start.date().isoformat()
    if p.payer is None:
        invoice: Json = {
            "resourceType": "Invoice",
            "id": chart.next_id("inv"),
            "status": "balanced" if (p.last_active - f.start.date()).days > 45 else "issued",
            "subject": ref("Patient", p.id),
            "recipient": ref("Patient", p.id),
            "date": instant(f.end + dt.timedelta(days=1)),
            "participant": [{"actor": ref("Practitioner", v.clinician.id, v.clinician.display)}],
            "issuer": ref("Organization", ORG_ID),
            "lineItem": [
                {
                    "sequence": n,
                    "chargeItemCodeableConcept": concept(CPT, code, desc),
                    "priceComponent": [{"type": "base", "amount": money(amount)}],
                }
                for n, (code, desc, amount) in enumerate(lines, 1)
            ],
            "totalNet": money(total),
            "totalGross": money(total),
            "paymentTerms": "Due within 30 days.",
        }
        return invoice, total
    dx = list(dict.fromkeys(diagnoses))
    claim: Json = {
        "resourceType": "Claim",
        "id": chart.next_id("claim"),
        "identifier": [{"system": CLAIM_ID_SYSTEM, "value": f"RFH{p.index:06d}{f.visit.n:03d}"}],
        "status": "active",
        "type": concept("http://terminology.hl7.org/CodeSystem/claim-type", "professional", "Professional"),
        "use": "claim",
        "patient": ref("Patient", p.id),
        "billablePeriod": {"start": instant(f.start), "end": instant(f.end)},
        "created": instant(f.end + dt.timedelta(days=1)),
        "insurer": ref("Organization", payer_id(p.payer)),
        "provider": ref("Organization", ORG_ID),
        "priority": concept("http://terminology.hl7.org/CodeSystem/processpriority", "normal", "Normal"),
        "careTeam": [
            {
                "sequence": 1,
                "provider": ref("Practitioner", v.clinician.id),
                "role": concept(
                    "http://terminology.hl7.org/CodeSystem/claimcareteamrole", "primary", "Primary provider"
                ),
            }
        ],
        "insurance": [{"sequence": 1, "focal": True, "coverage": ref("Coverage", coverage_id(chart))}],
        "item": [
            {
                "sequence": n,
                "careTeamSequence": [1],
                "productOrService": concept(CPT, code, desc),
                "servicedDate": served,
                "locationReference": ref("Location", location_id(v.clinician.location)),
                "quantity": {"value": 1},
                "unitPrice": money(amount),
                "net": money(amount),
                "encounter": [ref("Encounter", v.encounter_id)],
            }
            for n, (code, desc, amount) in enumerate(lines, 1)
        ],
        "total": money(total),
    }
    if dx:
        claim["diagnosis"] = [
            {"sequence": n, "diagnosisCodeableConcept": concept(ICD10CM, code, display)}
            for n, (code, display) in enumerate(dx, 1)
        ]
        for item in claim["item"]:
            item["diagnosisSequence"] = list(range(1, min(4, len(dx)) + 1))
    if f.labels:
        claim = {"resourceType": "Claim", "id": claim["id"], "meta": security(*f.labels), **claim}
    return claim, total
