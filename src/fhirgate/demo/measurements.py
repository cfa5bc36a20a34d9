"""Vital signs, lab results (with DiagnosticReports), screenings, procedures and immunizations for one visit.

Values follow the patient's Health: treated diabetics have lower HbA1c than untreated ones, CKD lowers eGFR,
and so on, with measurement noise.
"""

from __future__ import annotations

import datetime as dt
import random

from fhirgate.demo.chart import Chart, EncounterFacts
from fhirgate.demo.elements import CVX, LOINC, SNOMED, Json, coding, concept, instant, quantity, ref, security
from fhirgate.demo.health import height_at
from fhirgate.demo.orders import LABS, PANELS, PHQ9, PROCEDURES, SMOKING, SMOKING_VALUES, VACCINES, VITALS, ObsDef
from fhirgate.demo.practice import ORG_ID, location_id

OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
RESPIRATORY = ("uri", "sinusitis", "bronchitis", "pharyngitis", "covid")
FEBRILE = ("uri", "otitis", "covid", "bronchitis")


def _category(code: str, display: str) -> list[Json]:
    return [concept(OBS_CATEGORY, code, display)]


def _interpretation(d: ObsDef, value: float) -> list[Json] | None:
    if d.high is not None and value > d.high:
        return [concept(INTERPRETATION, "H", "High")]
    if d.low is not None and value < d.low:
        return [concept(INTERPRETATION, "L", "Low")]
    if d.low is None and d.high is None:
        return None
    return [concept(INTERPRETATION, "N", "Normal")]


def _range(d: ObsDef) -> list[Json] | None:
    if d.low is None and d.high is None:
        return None
    rr: Json = {}
    if d.low is not None:
        rr["low"] = quantity(d.low, d.unit, d.ucum)
    if d.high is not None:
        rr["high"] = quantity(d.high, d.unit, d.ucum)
    return [rr]


def observation(
    chart: Chart,
    f: EncounterFacts,
    d: ObsDef,
    value: float,
    category: tuple[str, str],
    when: dt.datetime,
    issued: dt.datetime | None = None,
) -> Json:
    """One quantitative Observation (FHIR R4 §9.4.3 vital signs profile shape for vitals)."""
    body: Json = {
        "resourceType": "Observation",
        "id": chart.next_id("obs"),
        "status": "final",
        "category": _category(*category),
        "code": concept(LOINC, d.loinc, d.display),
        "subject": ref("Patient", chart.person.id),
        "encounter": ref("Encounter", f.visit.encounter_id),
        "effectiveDateTime": instant(when),
        "issued": instant(issued or when),
        "performer": [ref("Practitioner", f.visit.clinician.id)],
        "valueQuantity": quantity(value, d.unit, d.ucum),
    }
    interp, rng_ = _interpretation(d, value), _range(d)
    if interp:
        body["interpretation"] = interp
    if rng_:
        body["referenceRange"] = rng_
    return body


def vitals(rng: random.Random, chart: Chart, f: EncounterFacts) -> list[Json]:
    """Vital-sign Observations for a medical (not behavioral-health) visit."""
    p, h, day = chart.person, chart.health, f.start.date()
    age_exact = (day - p.birth).days / 365.25
    age = int(age_exact)
    when = f.start + dt.timedelta(minutes=5)
    cat = ("vital-signs", "Vital Signs")
    v = f.vitals
    height = round(height_at(h.height_cm, age_exact) + rng.gauss(0, 0.4), 1)
    bmi = h.bmi + (rng.gauss(0, 0.5) if age >= 18 else 0.0)
    v["height"] = height
    v["weight"] = round(bmi * (height / 100) ** 2, 1)
    v["bmi"] = round(v["weight"] / (height / 100) ** 2, 1)
    v["hr"] = round(h.hr + rng.gauss(0, 6) + (8 if f.visit.acute else 0))
    fever = f.visit.acute in FEBRILE and rng.random() < 0.4
    v["temp"] = round(rng.uniform(38.1, 39.2) if fever else 36.8 + rng.gauss(0, 0.2), 1)
    out: list[Json] = []
    if age >= 3:
        if age < 13:
            sbp, dbp = 92 + age * 1.5 + rng.gauss(0, 5), 58 + age + rng.gauss(0, 4)
        else:
            treated = h.treated("hypertension", day)
            sbp = h.sbp - (14 if treated else 0) + rng.gauss(0, 7)
            dbp = h.dbp - (8 if treated else 0) + rng.gauss(0, 5)
        v["sbp"], v["dbp"] = round(sbp), round(dbp)
        bp = observation(chart, f, VITALS["bp"], 0, cat, when)
        del bp["valueQuantity"]
        bp.pop("referenceRange", None)
        bp.pop("interpretation", None)
        bp["component"] = []
        for key in ("sbp", "dbp"):
            d = VITALS[key]
            comp: Json = {"code": concept(LOINC, d.loinc, d.display), "valueQuantity": quantity(v[key], d.unit, d.ucum)}
            comp["interpretation"] = _interpretation(d, v[key])
            bp["component"].append(comp)
        out.append(bp)
    for key in ("hr", "temp", "weight"):
        out.append(observation(chart, f, VITALS[key], v[key], cat, when))
    if age >= 2:
        out.append(observation(chart, f, VITALS["bmi"], v["bmi"], cat, when))
    if f.visit.kind in ("annual", "new") or age < 18:
        out.append(observation(chart, f, VITALS["height"], height, cat, when))
    if f.visit.acute in RESPIRATORY or chart.health.has("copd", day):
        v["spo2"] = round(min(100.0, rng.uniform(91, 96) if chart.health.has("copd", day) else rng.uniform(94, 99)))
        v["rr"] = round(rng.uniform(20, 28) if age < 12 else rng.uniform(14, 20))
        out.append(observation(chart, f, VITALS["spo2"], v["spo2"], cat, when))
        out.append(observation(chart, f, VITALS["rr"], v["rr"], cat, when))
    return out


def _lab_values(rng: random.Random, chart: Chart, f: EncounterFacts, panel: str) -> dict[str, float]:
    h, p, day = chart.health, chart.person, f.start.date()
    years = (day - p.history_start).days / 365.0
    a1c = h.a1c - (1.3 if h.treated("diabetes", day) else 0.0) + rng.gauss(0, 0.25)
    if panel == "a1c":
        return {"a1c": round(max(4.3, a1c), 1)}
    if panel.startswith("lipid"):
        ldl = h.ldl * (0.58 if h.treated("hyperlipidemia", day) else 1.0) + rng.gauss(0, 8)
        hdl = rng.uniform(36, 62) + (8 if p.female else 0)
        tg = rng.uniform(90, 170) + (60 if h.has("diabetes") or h.has("obesity") else 0)
        ldl_key = "ldl_direct" if panel == "lipid_direct" else "ldl_calc"
        return {"chol": round(ldl + hdl + tg / 5), "hdl": round(hdl), "tg": round(tg), ldl_key: round(ldl)}
    if panel == "bmp":
        egfr = max(15.0, h.egfr - 0.8 * years + rng.gauss(0, 4))
        creat = (0.75 if p.female else 0.95) * 95 / egfr + rng.gauss(0, 0.05)
        return {
            "glucose": round(max(65.0, 28.7 * a1c - 46.7 + rng.gauss(0, 12))),
            "creatinine": round(creat, 2),
            "egfr": round(egfr),
            "potassium": round(rng.uniform(3.7, 5.0) + (0.3 if h.has("ckd3") else 0), 1),
            "sodium": round(rng.uniform(136, 144)),
        }
    tsh = rng.uniform(0.8, 3.6) if h.treated("hypothyroidism", day) else h.tsh + rng.gauss(0, 0.3)
    return {"tsh": round(max(0.1, tsh), 2)}


def _panels_due(rng: random.Random, chart: Chart, f: EncounterFacts) -> list[str]:
    h, day, kind = chart.health, f.start.date(), f.visit.kind
    age = chart.person.age_at(day)
    annual = kind in ("annual", "new")
    due: list[str] = []
    if (h.has("diabetes", day) and chart.due("a1c", day, 80)) or (
        annual and (h.has("prediabetes") or h.has("obesity")) and age >= 18 and chart.due("a1c", day, 300)
    ):
        due.append("a1c")
    if chart.due("lipid", day, 300) and ((annual and age >= 40) or h.has("hyperlipidemia", day)) and kind != "acute":
        due.append("lipid_direct" if chart.person.index % 3 == 0 else "lipid")
    if (
        chart.due("bmp", day, 170)
        and kind != "acute"
        and ((annual and age >= 40) or any(h.has(k, day) for k in ("ckd3", "diabetes", "hypertension")))
    ):
        due.append("bmp")
    if chart.due("tsh", day, 170) and (h.has("hypothyroidism", day) or (annual and age >= 18 and rng.random() < 0.1)):
        due.append("tsh")
    return due


def labs(rng: random.Random, chart: Chart, f: EncounterFacts) -> list[Json]:
    """Lab Observations grouped into one DiagnosticReport per panel, resulted the next day."""
    out: list[Json] = []
    drawn = f.start + dt.timedelta(minutes=20)
    issued = drawn + dt.timedelta(hours=rng.randint(18, 30))
    for panel in _panels_due(rng, chart, f):
        chart.last_panel["lipid" if panel.startswith("lipid") else panel] = f.start.date()
        values = _lab_values(rng, chart, f, panel)
        f.panels.append(panel)
        f.labs.update(values)
        results = [
            observation(chart, f, LABS[k], values[k], ("laboratory", "Laboratory"), drawn, issued)
            for k in PANELS[panel].results
        ]
        out.extend(results)
        pd = PANELS[panel]
        out.append(
            {
                "resourceType": "DiagnosticReport",
                "id": chart.next_id("dr"),
                "status": "final",
                "category": [concept("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB", "Laboratory")],
                "code": concept(LOINC, pd.loinc, pd.display),
                "subject": ref("Patient", chart.person.id),
                "encounter": ref("Encounter", f.visit.encounter_id),
                "effectiveDateTime": instant(drawn),
                "issued": instant(issued),
                "performer": [ref("Organization", ORG_ID)],
                "resultsInterpreter": [ref("Practitioner", f.visit.clinician.id)],
                "result": [ref("Observation", r["id"]) for r in results],
            }
        )
    return out


def screenings(rng: random.Random, chart: Chart, f: EncounterFacts) -> list[Json]:
    """PHQ-9 and smoking status at check-ups, and in-clinic procedures."""
    day, kind, h = f.start.date(), f.visit.kind, chart.health
    age = chart.person.age_at(day)
    when = f.start + dt.timedelta(minutes=15)
    out: list[Json] = []
    psych = any(p.cond.key in ("depression", "bipolar", "anxiety", "ptsd") for p in f.problems)
    if (kind in ("annual", "new") and age >= 12) or (kind == "behavioral" and psych):
        treated = h.treated("depression", day)
        f.phq9 = (
            (rng.randint(3, 11) if treated else rng.randint(9, 20)) if h.has("depression", day) else (rng.randint(0, 5))
        )
        out.append(
            {
                "resourceType": "Observation",
                "id": chart.next_id("obs"),
                "status": "final",
                "category": _category("survey", "Survey"),
                "code": concept(LOINC, *PHQ9),
                "subject": ref("Patient", chart.person.id),
                "encounter": ref("Encounter", f.visit.encounter_id),
                "effectiveDateTime": instant(when),
                "valueInteger": f.phq9,
            }
        )
        if kind != "behavioral":
            f.procedures.append("depression_screen")
    if kind in ("annual", "new") and age >= 13:
        out.append(
            {
                "resourceType": "Observation",
                "id": chart.next_id("obs"),
                "status": "final",
                "category": _category("social-history", "Social History"),
                "code": concept(LOINC, *SMOKING),
                "subject": ref("Patient", chart.person.id),
                "encounter": ref("Encounter", f.visit.encounter_id),
                "effectiveDateTime": instant(when),
                "valueCodeableConcept": concept(SNOMED, *SMOKING_VALUES[chart.person.smoking]),
            }
        )
        if age >= 18:
            f.procedures.append("substance_screen")
    if kind in ("annual", "chronic", "new") and any(p.meds for p in f.problems):
        f.procedures.append("med_rec")
    if f.visit.clinician.specialty.key == "cardiology":
        f.procedures.append("ecg")
    if kind == "annual" and age >= 6 and (h.has("asthma", day) or h.has("copd", day)) and rng.random() < 0.6:
        f.procedures.append("spirometry")
    if kind == "behavioral" and h.has("anxiety", day):
        f.procedures.append("anxiety_assess")
    for key in f.procedures:
        d = PROCEDURES[key]
        body: Json = {
            "resourceType": "Procedure",
            "id": chart.next_id("proc"),
            "status": "completed",
            "code": concept(SNOMED, d.snomed, d.display),
            "subject": ref("Patient", chart.person.id),
            "encounter": ref("Encounter", f.visit.encounter_id),
            "performedDateTime": instant(when),
            "performer": [{"actor": ref("Practitioner", f.visit.clinician.id)}],
            "location": ref("Location", location_id(f.visit.clinician.location)),
        }
        if f.labels and f.visit.kind == "behavioral":
            body["meta"] = security(*f.labels)
        out.append(body)
    return out


def _vaccines_due(rng: random.Random, chart: Chart, f: EncounterFacts) -> list[str]:
    day, p = f.start.date(), chart.person
    age_days = (day - p.birth).days
    age = age_days // 365
    season = day.year if day.month >= 8 else day.year - 1
    given = chart.vaccines
    due: list[str] = []
    if age_days >= 180 and (day.month >= 9 or day.month <= 2) and f"flu{season}" not in given:
        if rng.random() < chart.flu_propensity:
            due.append("flu")
        given.add(f"flu{season}")
    if age >= 12 and season >= 2021 and 9 <= day.month <= 12 and f"covid{season}" not in given:
        if rng.random() < chart.covid_propensity:
            due.append("covid_pfizer" if p.index % 2 else "covid_moderna")
        given.add(f"covid{season}")
    if f.visit.kind == "annual":
        by_age = (
            ((0, 2), ("dtap", "ipv", "hepb_peds")),
            ((1, 2), ("mmr", "varicella")),
            ((4, 6), ("dtap", "ipv", "mmr", "varicella")),
            ((11, 12), ("tdap", "hpv", "mcv4")),
            ((16, 17), ("mcv4",)),
        )
        for (lo, hi), keys in by_age:
            for k in keys:
                if lo <= age <= hi and f"{k}@{lo}" not in given:
                    due.append(k)
                    given.add(f"{k}@{lo}")
        if age >= 19 and "tdap" not in given and rng.random() < 0.15:
            due.append("tdap")
            given.add("tdap")
        if age >= 50 and "zoster" not in given and rng.random() < 0.2:
            due.append("zoster")
            given.add("zoster")
        if age >= 65 and "ppsv23" not in given and rng.random() < 0.4:
            due.append("ppsv23")
            given.add("ppsv23")
    return due


def immunizations(rng: random.Random, chart: Chart, f: EncounterFacts) -> list[Json]:
    """Immunizations given at the visit (CVX), seasonal flu and COVID plus age-based series."""
    out: list[Json] = []
    when = f.start + dt.timedelta(minutes=25)
    for key in _vaccines_due(rng, chart, f):
        code, display = VACCINES[key]
        f.vaccines.append(key)
        out.append(
            {
                "resourceType": "Immunization",
                "id": chart.next_id("imm"),
                "status": "completed",
                "vaccineCode": concept(CVX, code, display),
                "patient": ref("Patient", chart.person.id),
                "encounter": ref("Encounter", f.visit.encounter_id),
                "occurrenceDateTime": instant(when),
                "recorded": instant(when),
                "primarySource": True,
                "location": ref("Location", location_id(f.visit.clinician.location)),
                "lotNumber": f"{chr(65 + rng.randrange(26))}{rng.randint(10000, 99999)}",
                "site": concept("http://terminology.hl7.org/CodeSystem/v3-ActSite", "LA", "left arm"),
                "route": concept(
                    "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration", "IM", "Injection, intramuscular"
                ),
                "performer": [
                    {
                        "function": {
                            "coding": [
                                coding("http://terminology.hl7.org/CodeSystem/v2-0443", "AP", "Administering Provider")
                            ]
                        },
                        "actor": ref("Practitioner", f.visit.clinician.id),
                    }
                ],
            }
        )
    return out
