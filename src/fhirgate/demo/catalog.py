"""Code tables for the demo practice: conditions and medications (orders.py and offerings.py hold the rest).

Codes are real (ICD-10-CM FY2025 leaf codes, SNOMED CT, LOINC, RxNorm, CVX, NUCC taxonomy, CPT numbers) so
that searches by code behave as they would on real data; displays are short and written for this project.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhirgate.demo.elements import HIV_LABELS, PSY_LABELS, SUD_LABELS

Label = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class ConditionDef:
    """A diagnosis: ICD-10-CM and SNOMED codings, follow-up cadence, drugs used for it, security labels."""

    key: str
    icd10: str
    icd_display: str
    snomed: str
    snomed_display: str
    chronic: bool = True
    followup_days: int = 0
    meds: tuple[str, ...] = ()
    specialty: str | None = None
    labels: tuple[Label, ...] = ()


@dataclass(frozen=True, slots=True)
class MedDef:
    """A prescribable drug (RxNorm SCD/SBD) with its usual sig."""

    key: str
    rxnorm: str
    display: str
    sig: str
    short: str
    days_supply: int = 90
    labels: tuple[Label, ...] = ()


CONDITIONS: dict[str, ConditionDef] = {
    c.key: c
    for c in (
        ConditionDef(
            "diabetes",
            "E11.9",
            "Type 2 diabetes mellitus without complications",
            "44054006",
            "Diabetes mellitus type 2 (disorder)",
            followup_days=100,
            meds=("metformin",),
            specialty="endocrinology",
        ),
        ConditionDef("prediabetes", "R73.03", "Prediabetes", "714628002", "Prediabetes (finding)", followup_days=365),
        ConditionDef(
            "hypertension",
            "I10",
            "Essential (primary) hypertension",
            "59621000",
            "Essential hypertension (disorder)",
            followup_days=180,
            meds=("lisinopril", "amlodipine", "hctz"),
            specialty="cardiology",
        ),
        ConditionDef(
            "hyperlipidemia",
            "E78.5",
            "Hyperlipidemia, unspecified",
            "55822004",
            "Hyperlipidemia (disorder)",
            followup_days=365,
            meds=("atorvastatin",),
        ),
        ConditionDef(
            "asthma",
            "J45.909",
            "Unspecified asthma, uncomplicated",
            "195967001",
            "Asthma (disorder)",
            followup_days=365,
            meds=("albuterol",),
        ),
        ConditionDef(
            "depression",
            "F32.9",
            "Major depressive disorder, single episode, unspecified",
            "35489007",
            "Depressive disorder (disorder)",
            followup_days=120,
            meds=("sertraline",),
            specialty="psychiatry",
        ),
        ConditionDef(
            "anxiety",
            "F41.1",
            "Generalized anxiety disorder",
            "21897009",
            "Generalized anxiety disorder (disorder)",
            followup_days=180,
            meds=("escitalopram",),
            specialty="counseling",
        ),
        ConditionDef("obesity", "E66.9", "Obesity, unspecified", "414916001", "Obesity (disorder)", followup_days=365),
        ConditionDef(
            "gerd",
            "K21.9",
            "Gastro-esophageal reflux disease without esophagitis",
            "235595009",
            "Gastroesophageal reflux disease (disorder)",
            meds=("omeprazole",),
        ),
        ConditionDef(
            "hypothyroidism",
            "E03.9",
            "Hypothyroidism, unspecified",
            "40930008",
            "Hypothyroidism (disorder)",
            followup_days=180,
            meds=("levothyroxine",),
        ),
        ConditionDef(
            "ckd3",
            "N18.30",
            "Chronic kidney disease, stage 3 unspecified",
            "433144002",
            "Chronic kidney disease stage 3 (disorder)",
            followup_days=180,
        ),
        ConditionDef(
            "copd",
            "J44.9",
            "Chronic obstructive pulmonary disease, unspecified",
            "13645005",
            "Chronic obstructive lung disease (disorder)",
            followup_days=180,
            meds=("fluticasone_salmeterol",),
        ),
        ConditionDef(
            "afib",
            "I48.91",
            "Unspecified atrial fibrillation",
            "49436004",
            "Atrial fibrillation (disorder)",
            followup_days=180,
            meds=("metoprolol",),
            specialty="cardiology",
        ),
        ConditionDef(
            "oa_knee",
            "M17.9",
            "Osteoarthritis of knee, unspecified",
            "239873007",
            "Osteoarthritis of knee (disorder)",
            meds=("naproxen",),
        ),
        ConditionDef(
            "back_pain",
            "M54.50",
            "Low back pain, unspecified",
            "278860009",
            "Chronic low back pain (finding)",
            meds=("ibuprofen",),
        ),
        ConditionDef("rhinitis", "J30.9", "Allergic rhinitis, unspecified", "61582004", "Allergic rhinitis (disorder)"),
        ConditionDef(
            "migraine",
            "G43.909",
            "Migraine, unspecified, not intractable, without status migrainosus",
            "37796009",
            "Migraine (disorder)",
        ),
        ConditionDef(
            "vitd", "E55.9", "Vitamin D deficiency, unspecified", "34713006", "Vitamin D deficiency (disorder)"
        ),
        ConditionDef(
            "osteoporosis",
            "M81.0",
            "Age-related osteoporosis without current pathological fracture",
            "64859006",
            "Osteoporosis (disorder)",
        ),
        ConditionDef(
            "tobacco",
            "F17.210",
            "Nicotine dependence, cigarettes, uncomplicated",
            "56294008",
            "Nicotine dependence (disorder)",
            followup_days=365,
        ),
        ConditionDef(
            "aud",
            "F10.20",
            "Alcohol dependence, uncomplicated",
            "7200002",
            "Alcoholism (disorder)",
            followup_days=60,
            meds=("naltrexone",),
            specialty="psychiatry",
            labels=SUD_LABELS,
        ),
        ConditionDef(
            "oud",
            "F11.20",
            "Opioid dependence, uncomplicated",
            "75544000",
            "Opioid dependence (disorder)",
            followup_days=30,
            meds=("buprenorphine_naloxone",),
            specialty="psychiatry",
            labels=SUD_LABELS,
        ),
        ConditionDef(
            "hiv",
            "B20",
            "Human immunodeficiency virus [HIV] disease",
            "86406008",
            "Human immunodeficiency virus infection (disorder)",
            followup_days=90,
            meds=("biktarvy",),
            labels=HIV_LABELS,
        ),
        ConditionDef(
            "bipolar",
            "F31.9",
            "Bipolar disorder, unspecified",
            "13746004",
            "Bipolar disorder (disorder)",
            followup_days=60,
            meds=("lamotrigine",),
            specialty="psychiatry",
            labels=PSY_LABELS,
        ),
        ConditionDef(
            "ptsd",
            "F43.10",
            "Post-traumatic stress disorder, unspecified",
            "47505003",
            "Posttraumatic stress disorder (disorder)",
            followup_days=30,
            specialty="counseling",
            labels=PSY_LABELS,
        ),
        # Acute problems seen at same-day visits.
        ConditionDef(
            "uri",
            "J06.9",
            "Acute upper respiratory infection, unspecified",
            "54150009",
            "Upper respiratory infection (disorder)",
            chronic=False,
        ),
        ConditionDef(
            "sinusitis",
            "J01.90",
            "Acute sinusitis, unspecified",
            "444814009",
            "Viral sinusitis (disorder)",
            chronic=False,
        ),
        ConditionDef(
            "bronchitis",
            "J20.9",
            "Acute bronchitis, unspecified",
            "10509002",
            "Acute bronchitis (disorder)",
            chronic=False,
        ),
        ConditionDef(
            "pharyngitis",
            "J02.9",
            "Acute pharyngitis, unspecified",
            "195662009",
            "Acute viral pharyngitis (disorder)",
            chronic=False,
        ),
        ConditionDef(
            "uti",
            "N30.00",
            "Acute cystitis without hematuria",
            "307426000",
            "Acute infective cystitis (disorder)",
            chronic=False,
            meds=("cephalexin",),
        ),
        ConditionDef(
            "otitis",
            "H66.90",
            "Otitis media, unspecified, unspecified ear",
            "65363002",
            "Otitis media (disorder)",
            chronic=False,
            meds=("amox_clav",),
        ),
        ConditionDef(
            "ankle_sprain",
            "S93.401A",
            "Sprain of unspecified ligament of right ankle, initial encounter",
            "44465007",
            "Sprain of ankle (disorder)",
            chronic=False,
            meds=("ibuprofen",),
        ),
        ConditionDef(
            "covid",
            "U07.1",
            "COVID-19",
            "840539006",
            "Disease caused by severe acute respiratory syndrome coronavirus 2 (disorder)",
            chronic=False,
        ),
    )
}

ACUTE_KEYS = tuple(k for k, c in CONDITIONS.items() if not c.chronic)

MEDS: dict[str, MedDef] = {
    m.key: m
    for m in (
        MedDef(
            "metformin",
            "861007",
            "metformin hydrochloride 500 MG Oral Tablet",
            "Take 1 tablet by mouth twice daily with meals.",
            "metformin 500 mg BID",
        ),
        MedDef(
            "lisinopril",
            "314076",
            "lisinopril 10 MG Oral Tablet",
            "Take 1 tablet by mouth daily.",
            "lisinopril 10 mg daily",
        ),
        MedDef(
            "amlodipine",
            "308136",
            "amLODIPine 2.5 MG Oral Tablet",
            "Take 1 tablet by mouth daily.",
            "amlodipine 2.5 mg daily",
        ),
        MedDef(
            "hctz",
            "310798",
            "Hydrochlorothiazide 25 MG Oral Tablet",
            "Take 1 tablet by mouth every morning.",
            "HCTZ 25 mg daily",
        ),
        MedDef(
            "atorvastatin",
            "259255",
            "atorvastatin 80 MG Oral Tablet",
            "Take 1 tablet by mouth at bedtime.",
            "atorvastatin 80 mg nightly",
        ),
        MedDef(
            "levothyroxine",
            "966222",
            "levothyroxine sodium 0.075 MG Oral Tablet",
            "Take 1 tablet by mouth every morning on an empty stomach.",
            "levothyroxine 75 mcg daily",
        ),
        MedDef(
            "sertraline",
            "312941",
            "sertraline 50 MG Oral Tablet",
            "Take 1 tablet by mouth daily.",
            "sertraline 50 mg daily",
        ),
        MedDef(
            "escitalopram",
            "349332",
            "escitalopram 10 MG Oral Tablet",
            "Take 1 tablet by mouth daily.",
            "escitalopram 10 mg daily",
        ),
        MedDef(
            "albuterol",
            "745679",
            "200 ACTUAT albuterol 0.09 MG/ACTUAT Metered Dose Inhaler",
            "Inhale 2 puffs every 4 to 6 hours as needed for wheezing.",
            "albuterol HFA 2 puffs q4-6h PRN",
            days_supply=30,
        ),
        MedDef(
            "fluticasone_salmeterol",
            "896209",
            "60 ACTUAT Fluticasone propionate 0.25 MG/ACTUAT / salmeterol 0.05 MG/ACTUAT Dry Powder Inhaler",
            "Inhale 1 puff twice daily.",
            "fluticasone/salmeterol 250/50 1 puff BID",
            days_supply=30,
        ),
        MedDef(
            "omeprazole",
            "198051",
            "omeprazole 20 MG Delayed Release Oral Capsule",
            "Take 1 capsule by mouth daily before breakfast.",
            "omeprazole 20 mg daily",
        ),
        MedDef(
            "metoprolol",
            "866412",
            "24 HR metoprolol succinate 100 MG Extended Release Oral Tablet",
            "Take 1 tablet by mouth daily.",
            "metoprolol succinate ER 100 mg daily",
        ),
        MedDef(
            "naproxen",
            "849574",
            "Naproxen sodium 220 MG Oral Tablet",
            "Take 1 tablet by mouth every 12 hours as needed for pain.",
            "naproxen 220 mg q12h PRN",
            days_supply=30,
        ),
        MedDef(
            "ibuprofen",
            "310965",
            "Ibuprofen 200 MG Oral Tablet",
            "Take 2 tablets by mouth every 6 hours as needed for pain.",
            "ibuprofen 400 mg q6h PRN",
            days_supply=14,
        ),
        MedDef(
            "cephalexin",
            "197454",
            "cephalexin 500 MG Oral Tablet",
            "Take 1 tablet by mouth every 12 hours for 7 days.",
            "cephalexin 500 mg BID x7d",
            days_supply=7,
        ),
        MedDef(
            "amox_clav",
            "562251",
            "Amoxicillin 250 MG / Clavulanate 125 MG Oral Tablet",
            "Take 1 tablet by mouth every 8 hours for 10 days.",
            "amoxicillin-clavulanate TID x10d",
            days_supply=10,
        ),
        MedDef(
            "naltrexone",
            "197897",
            "naltrexone hydrochloride 50 MG Oral Tablet",
            "Take 1 tablet by mouth daily.",
            "naltrexone 50 mg daily",
            days_supply=30,
            labels=SUD_LABELS,
        ),
        MedDef(
            "buprenorphine_naloxone",
            "1010604",
            "buprenorphine 8 MG / naloxone 2 MG Sublingual Film",
            "Dissolve 1 film under the tongue daily.",
            "buprenorphine/naloxone 8/2 mg SL daily",
            days_supply=28,
            labels=SUD_LABELS,
        ),
        MedDef(
            "biktarvy",
            "1999673",
            "bictegravir 50 MG / emtricitabine 200 MG / tenofovir alafenamide 25 MG Oral Tablet [Biktarvy]",
            "Take 1 tablet by mouth daily.",
            "Biktarvy 1 tab daily",
            days_supply=30,
            labels=HIV_LABELS,
        ),
        MedDef(
            "lamotrigine",
            "198429",
            "lamotrigine 100 MG Oral Tablet",
            "Take 1 tablet by mouth daily.",
            "lamotrigine 100 mg daily",
            labels=PSY_LABELS,
        ),
    )
}
