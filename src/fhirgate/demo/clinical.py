"""Conditions, Encounters, MedicationRequests, AllergyIntolerances, CareTeams and Consents for one patient.

Sensitive records carry meta.security labels (FHIR R4 §8.1.2 security labels): substance use R+ETH+42CFRPart2
+NORDSCLCD, HIV R+HIV, serious mental illness R+PSY.
"""

from __future__ import annotations

import datetime as dt
import random

from fhirgate.demo.catalog import CONDITIONS, MEDS, ConditionDef, MedDef
from fhirgate.demo.chart import Chart, EncounterFacts
from fhirgate.demo.elements import (
    ICD10CM,
    LOINC,
    NUCC,
    RXNORM,
    SNOMED,
    SUD_LABELS,
    UCUM,
    V3_ACTCODE,
    V3_PARTICIPATION,
    Json,
    coding,
    concept,
    instant,
    ref,
    security,
)
from fhirgate.demo.health import Problem
from fhirgate.demo.orders import ALLERGENS
from fhirgate.demo.practice import ORG_ID, Clinician, location_id, service_concept
from fhirgate.demo.schedule import COMPLAINTS, Visit

CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"


def condition_code(c: ConditionDef) -> Json:
    """ICD-10-CM and SNOMED codings of one diagnosis in the same CodeableConcept."""
    return {
        "coding": [coding(ICD10CM, c.icd10, c.icd_display), coding(SNOMED, c.snomed, c.snomed_display)],
        "text": c.icd_display,
    }


def _condition(
    id: str,
    c: ConditionDef,
    patient_id: str,
    onset: dt.date,
    recorded: dt.date,
    encounter_id: str | None,
    recorder: Clinician | None,
    abated: dt.date | None,
    category: str,
) -> Json:
    body: Json = {
        "resourceType": "Condition",
        "id": id,
        "clinicalStatus": concept(CLINICAL, "resolved" if abated else "active", "Resolved" if abated else "Active"),
        "verificationStatus": concept(VERIFICATION, "confirmed", "Confirmed"),
        "category": [
            concept(
                CONDITION_CATEGORY,
                category,
                "Problem List Item" if category == "problem-list-item" else "Encounter Diagnosis",
            )
        ],
        "code": condition_code(c),
        "subject": ref("Patient", patient_id),
        "onsetDateTime": onset.isoformat(),
        "recordedDate": recorded.isoformat(),
    }
    if c.labels:
        body = {"resourceType": "Condition", "id": id, "meta": security(*c.labels), **body}
    if encounter_id:
        body["encounter"] = ref("Encounter", encounter_id)
    if recorder:
        body["recorder"] = ref("Practitioner", recorder.id)
    if abated:
        body["abatementDateTime"] = abated.isoformat()
    return body


def problem_resources(chart: Chart, visits: list[Visit]) -> list[Json]:
    """Problem-list Conditions, each recorded at the first fulfilled visit on or after its diagnosis."""
    out: list[Json] = []
    fulfilled = [v for v in visits if v.status == "fulfilled"]
    for p in chart.health.problems:
        visit = next((v for v in fulfilled if v.start.date() >= p.diagnosed), None)
        p.recorded = visit.start.date() if visit else p.diagnosed
        p.encounter_id = visit.encounter_id if visit else None
        out.append(
            _condition(
                p.id,
                p.cond,
                chart.person.id,
                p.onset,
                p.recorded,
                p.encounter_id,
                visit.clinician if visit else None,
                None,
                "problem-list-item",
            )
        )
    return out


def acute_condition(rng: random.Random, chart: Chart, f: EncounterFacts) -> Json:
    """The encounter diagnosis of a same-day sick visit, resolved one to three weeks later."""
    assert f.visit.acute
    c = CONDITIONS[f.visit.acute]
    day = f.start.date()
    f.acute_id = chart.next_id("cond-acute")
    abated = day + dt.timedelta(days=rng.randint(7, 21))
    return _condition(
        f.acute_id,
        c,
        chart.person.id,
        day - dt.timedelta(days=rng.randint(1, 5)),
        day,
        f.visit.encounter_id,
        f.visit.clinician,
        abated,
        "encounter-diagnosis",
    )


def encounter_resource(f: EncounterFacts, patient_id: str) -> Json:
    """The Encounter of a fulfilled Appointment: finished, ambulatory (v3-ActCode AMB), with its diagnoses."""
    v = f.visit
    diagnoses = [p.id for p in f.problems] + ([f.acute_id] if f.acute_id else [])
    body: Json = {
        "resourceType": "Encounter",
        "id": v.encounter_id,
        "status": "finished",
        "class": coding(V3_ACTCODE, "AMB", "ambulatory"),
        "type": [service_concept(v.service)],
        "subject": ref("Patient", patient_id),
        "participant": [
            {
                "type": [concept(V3_PARTICIPATION, "PPRF", "primary performer")],
                "period": {"start": instant(f.start), "end": instant(f.end)},
                "individual": ref("Practitioner", v.clinician.id, v.clinician.display),
            }
        ],
        "appointment": [ref("Appointment", v.id)],
        "period": {"start": instant(f.start), "end": instant(f.end)},
        "location": [{"location": ref("Location", location_id(v.clinician.location)), "status": "completed"}],
        "serviceProvider": ref("Organization", ORG_ID),
    }
    if f.labels:
        body = {"resourceType": "Encounter", "id": v.encounter_id, "meta": security(*f.labels), **body}
    if v.acute:
        body["reasonCode"] = [{"text": COMPLAINTS[v.acute]}]
    if diagnoses:
        body["diagnosis"] = [
            {
                "condition": ref("Condition", cid),
                "use": concept("http://terminology.hl7.org/CodeSystem/diagnosis-role", "billing", "Billing"),
                "rank": n + 1,
            }
            for n, cid in enumerate(diagnoses)
        ]
    return body


def medication_request(
    chart: Chart,
    med: MedDef,
    authored: dt.datetime,
    requester: Clinician,
    reason: str | None,
    encounter_id: str | None,
    status: str,
    chronic: bool,
) -> Json:
    """A MedicationRequest (intent order) with an RxNorm medicationCodeableConcept and a plain-text sig."""
    body: Json = {
        "resourceType": "MedicationRequest",
        "id": chart.next_id("medrx"),
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": concept(RXNORM, med.rxnorm, med.display),
        "subject": ref("Patient", chart.person.id),
        "authoredOn": instant(authored),
        "requester": ref("Practitioner", requester.id, requester.display),
        "courseOfTherapyType": concept(
            "http://terminology.hl7.org/CodeSystem/medicationrequest-course-of-therapy",
            "continuous" if chronic else "acute",
            "Continuous long term therapy" if chronic else "Short course (acute) therapy",
        ),
        "dosageInstruction": [{"text": med.sig}],
        "dispenseRequest": {
            "numberOfRepeatsAllowed": 3 if chronic else 0,
            "expectedSupplyDuration": {"value": med.days_supply, "unit": "days", "system": UCUM, "code": "d"},
        },
    }
    if med.labels:
        body = {"resourceType": "MedicationRequest", "id": body["id"], "meta": security(*med.labels), **body}
    if encounter_id:
        body["encounter"] = ref("Encounter", encounter_id)
    if reason:
        body["reasonReference"] = [ref("Condition", reason)]
    return body


def chronic_medications(chart: Chart, visits: list[Visit]) -> list[Json]:
    """One standing order per drug of each treated problem, from the visit that recorded the problem."""
    out: list[Json] = []
    p = chart.person
    stopped = p.engagement == "inactive" or p.deceased is not None
    by_encounter = {v.encounter_id: v for v in visits}
    for prob in chart.health.problems:
        visit = by_encounter.get(prob.encounter_id or "")
        for key in prob.meds:
            med = MEDS[key]
            when = (
                visit.start + dt.timedelta(minutes=25)
                if visit
                else dt.datetime.combine(prob.recorded or prob.diagnosed, dt.time(12))
            )
            out.append(
                medication_request(
                    chart,
                    med,
                    when,
                    visit.clinician if visit else p.pcp,
                    prob.id,
                    prob.encounter_id,
                    "stopped" if stopped else "active",
                    True,
                )
            )
    return out


def acute_medication(rng: random.Random, chart: Chart, f: EncounterFacts) -> list[Json]:
    """A short course for a same-day sick visit, when the problem calls for one."""
    c = CONDITIONS[f.visit.acute or ""]
    if not c.meds or rng.random() < 0.35:
        return []
    med = MEDS[c.meds[0]]
    f.meds_started.append(med)
    return [
        medication_request(
            chart,
            med,
            f.start + dt.timedelta(minutes=18),
            f.visit.clinician,
            f.acute_id,
            f.visit.encounter_id,
            "completed",
            False,
        )
    ]


def allergies(rng: random.Random, chart: Chart) -> list[Json]:
    """Zero to two AllergyIntolerances (a quarter of patients have one)."""
    count = 2 if rng.random() < 0.05 else 1 if rng.random() < 0.25 else 0
    out: list[Json] = []
    for item in rng.sample(ALLERGENS, count):
        system, code, display, category, criticality, manifestation, man_display = item
        out.append(
            {
                "resourceType": "AllergyIntolerance",
                "id": chart.next_id("allergy"),
                "clinicalStatus": concept(
                    "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active", "Active"
                ),
                "verificationStatus": concept(
                    "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "confirmed", "Confirmed"
                ),
                "type": "allergy",
                "category": [category],
                "criticality": criticality,
                "code": concept(RXNORM if system == "rxnorm" else SNOMED, code, display),
                "patient": ref("Patient", chart.person.id),
                "recordedDate": chart.person.history_start.isoformat(),
                "reaction": [
                    {
                        "manifestation": [concept(SNOMED, manifestation, man_display)],
                        "severity": "severe" if criticality == "high" else "mild",
                    }
                ],
            }
        )
    return out


def care_team(chart: Chart, visits: list[Visit]) -> list[Json]:
    """A longitudinal CareTeam for patients with chronic problems: the PCP plus clinicians seen."""
    if not chart.health.problems:
        return []
    p = chart.person
    members: dict[str, Clinician] = {p.pcp.id: p.pcp}
    for v in visits:
        if v.status == "fulfilled":
            members.setdefault(v.clinician.id, v.clinician)
    participants: list[Json] = [
        {"role": [concept(SNOMED, "116154003", "Patient (person)")], "member": ref("Patient", p.id, p.name)}
    ]
    participants += [
        {"role": [concept(NUCC, c.specialty.nucc, c.specialty.display)], "member": ref("Practitioner", c.id, c.display)}
        for c in members.values()
    ]
    active = p.engagement != "inactive" and p.deceased is None
    return [
        {
            "resourceType": "CareTeam",
            "id": chart.next_id("careteam"),
            "status": "active" if active else "inactive",
            "category": [concept(LOINC, "LA28865-6", "Longitudinal care-coordination focused care team")],
            "name": f"Care team of {p.name}",
            "subject": ref("Patient", p.id),
            "period": {"start": p.history_start.isoformat()},
            "participant": participants,
            "reasonReference": [ref("Condition", prob.id) for prob in chart.health.problems],
            "managingOrganization": [ref("Organization", ORG_ID)],
        }
    ]


def consents(chart: Chart, *, optout: bool) -> list[Json]:
    """Privacy Consents: a full opt-out (policyRule OPTOUT, deny) or a 42 CFR Part 2 deny for SUD records."""
    p = chart.person
    sud = [prob for prob in chart.health.problems if prob.cond.labels == SUD_LABELS]
    if not optout and not (sud and p.index % 2 == 1):
        return []
    base: Json = {
        "resourceType": "Consent",
        "id": chart.next_id("consent"),
        "status": "active",
        "scope": concept("http://terminology.hl7.org/CodeSystem/consentscope", "patient-privacy", "Privacy Consent"),
        "category": [concept(LOINC, "59284-0", "Patient Consent")],
        "patient": ref("Patient", p.id),
        "dateTime": instant(dt.datetime.combine(p.history_start, dt.time(9, 30))),
        "organization": [ref("Organization", ORG_ID)],
    }
    if optout:
        base["policyRule"] = concept(V3_ACTCODE, "OPTOUT", "opt-out")
        base["provision"] = {"type": "deny", "period": {"start": p.history_start.isoformat()}}
        return [base]
    base["policyRule"] = concept(V3_ACTCODE, "42CFRPart2", "42 CFR Part2")
    base["provision"] = {
        "type": "deny",
        "period": {"start": p.history_start.isoformat()},
        "securityLabel": [coding(V3_ACTCODE, "ETH", "substance abuse information sensitivity")],
        "purpose": [
            coding(V3_ACTCODE, "HRESCH", "healthcare research"),
            coding(V3_ACTCODE, "HPAYMT", "healthcare payment"),
        ],
    }
    return [base]


def addressed(chart: Chart, v: Visit) -> list[Problem]:
    """The chronic problems a visit dealt with: all active ones at check-ups, else those it was booked for."""
    day = v.start.date()
    recorded = [p for p in chart.health.problems if p.recorded and p.recorded <= day]
    if v.kind in ("annual", "new"):
        return recorded
    if v.kind == "acute":
        return []
    wanted = {p.id for p in v.problems}
    return [p for p in recorded if p.id in wanted]
