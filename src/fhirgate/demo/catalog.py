"""Code tables for the demo practice: conditions, medications, observations, vaccines, services and specialties.

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


@dataclass(frozen=True, slots=True)
class ObsDef:
    """A LOINC observation code with its UCUM unit and normal range (None when unbounded)."""

    loinc: str
    display: str
    unit: str
    ucum: str
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True, slots=True)
class PanelDef:
    """A lab panel reported as one DiagnosticReport; priced by its CPT code."""

    key: str
    loinc: str
    display: str
    cpt: str
    price: float
    results: tuple[str, ...]


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


@dataclass(frozen=True, slots=True)
class ProcedureDef:
    """A procedure done in clinic (SNOMED), billed under a CPT code when `cpt` is set."""

    key: str
    snomed: str
    display: str
    cpt: str | None = None
    price: float = 0.0


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

VITALS: dict[str, ObsDef] = {
    "bp": ObsDef("85354-9", "Blood pressure panel with all children optional", "mm[Hg]", "mm[Hg]"),
    "sbp": ObsDef("8480-6", "Systolic blood pressure", "mm[Hg]", "mm[Hg]", 90, 129),
    "dbp": ObsDef("8462-4", "Diastolic blood pressure", "mm[Hg]", "mm[Hg]", 60, 79),
    "hr": ObsDef("8867-4", "Heart rate", "/min", "/min", 60, 100),
    "rr": ObsDef("9279-1", "Respiratory rate", "/min", "/min", 12, 20),
    "temp": ObsDef("8310-5", "Body temperature", "Cel", "Cel", 36.1, 37.8),
    "weight": ObsDef("29463-7", "Body weight", "kg", "kg"),
    "height": ObsDef("8302-2", "Body height", "cm", "cm"),
    "bmi": ObsDef("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", "kg/m2", 18.5, 24.9),
    "spo2": ObsDef("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%", "%", 95, 100),
}

LABS: dict[str, ObsDef] = {
    "a1c": ObsDef("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", "%", 4.0, 5.6),
    "chol": ObsDef("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", None, 199),
    "hdl": ObsDef("2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", 40, None),
    "tg": ObsDef("2571-8", "Triglyceride [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", None, 149),
    "ldl_calc": ObsDef(
        "13457-7", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by calculation", "mg/dL", "mg/dL", None, 99
    ),
    "ldl_direct": ObsDef(
        "18262-6", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay", "mg/dL", "mg/dL", None, 99
    ),
    "glucose": ObsDef("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", 70, 99),
    "creatinine": ObsDef("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", 0.6, 1.3),
    "egfr": ObsDef(
        "33914-3",
        "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum or "
        "Plasma by Creatinine-based formula (MDRD)",
        "mL/min/{1.73_m2}",
        "mL/min/{1.73_m2}",
        60,
        None,
    ),
    "potassium": ObsDef("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", "mmol/L", 3.5, 5.1),
    "sodium": ObsDef("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", "mmol/L", 136, 145),
    "tsh": ObsDef("3016-3", "Thyrotropin [Units/volume] in Serum or Plasma", "m[IU]/L", "m[IU]/L", 0.4, 4.5),
}

PANELS: dict[str, PanelDef] = {
    p.key: p
    for p in (
        PanelDef("a1c", "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "83036", 45.0, ("a1c",)),
        PanelDef(
            "lipid", "24331-1", "Lipid 1996 panel - Serum or Plasma", "80061", 65.0, ("chol", "hdl", "tg", "ldl_calc")
        ),
        PanelDef(
            "lipid_direct",
            "57698-3",
            "Lipid panel with direct LDL - Serum or Plasma",
            "80061",
            72.0,
            ("chol", "hdl", "tg", "ldl_direct"),
        ),
        PanelDef(
            "bmp",
            "51990-0",
            "Basic metabolic panel - Blood",
            "80048",
            40.0,
            ("glucose", "creatinine", "egfr", "potassium", "sodium"),
        ),
        PanelDef("tsh", "3016-3", "Thyrotropin [Units/volume] in Serum or Plasma", "84443", 55.0, ("tsh",)),
    )
}

VENIPUNCTURE = ("36415", "Routine venipuncture", 15.0)

# Other observations: PHQ-9 total (survey) and smoking status (social-history).
PHQ9 = ("44261-6", "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]")
SMOKING = ("72166-2", "Tobacco smoking status")
SMOKING_VALUES = {
    "current": ("449868002", "Smokes tobacco daily (finding)"),
    "former": ("8517006", "Ex-smoker (finding)"),
    "never": ("266919005", "Never smoked tobacco (finding)"),
}

VACCINES: dict[str, tuple[str, str]] = {
    "flu": ("140", "Influenza, seasonal, injectable, preservative free"),
    "covid_pfizer": ("208", "COVID-19, mRNA, LNP-S, PF, 30 mcg/0.3 mL dose"),
    "covid_moderna": ("207", "COVID-19, mRNA, LNP-S, PF, 100 mcg/0.5mL dose or 50 mcg/0.25mL dose"),
    "tdap": ("115", "Tdap"),
    "td": ("113", "Td (adult), 5 Lf tetanus toxoid, preservative free, adsorbed"),
    "zoster": ("187", "zoster vaccine recombinant"),
    "ppsv23": ("33", "pneumococcal polysaccharide vaccine, 23 valent"),
    "hepb_adult": ("43", "Hep B, adult"),
    "hepa_adult": ("52", "Hep A, adult"),
    "hpv": ("165", "HPV9"),
    "mcv4": ("114", "meningococcal MCV4P"),
    "dtap": ("20", "DTaP"),
    "ipv": ("10", "IPV"),
    "mmr": ("03", "MMR"),
    "varicella": ("21", "varicella"),
    "hepb_peds": ("08", "Hep B, adolescent or pediatric"),
}
VACCINE_ADMIN = ("90471", "Immunization administration", 30.0)

# (system key, code, display, category, criticality, reaction SNOMED code, reaction display)
ALLERGENS: tuple[tuple[str, str, str, str, str, str, str], ...] = (
    ("rxnorm", "7980", "Penicillin G", "medication", "high", "247472004", "Wheal (finding)"),
    (
        "rxnorm",
        "10831",
        "Sulfamethoxazole / Trimethoprim",
        "medication",
        "low",
        "271807003",
        "Eruption of skin (disorder)",
    ),
    ("rxnorm", "29046", "Lisinopril", "medication", "low", "267036007", "Dyspnea (finding)"),
    ("rxnorm", "2670", "Codeine", "medication", "low", "422587007", "Nausea (finding)"),
    ("sct", "762952008", "Peanut (substance)", "food", "high", "39579001", "Anaphylaxis (disorder)"),
    ("sct", "735029006", "Shellfish (substance)", "food", "high", "247472004", "Wheal (finding)"),
    ("sct", "412071004", "Wheat (substance)", "food", "low", "271807003", "Eruption of skin (disorder)"),
    ("sct", "264287008", "Animal dander (substance)", "environment", "low", "49727002", "Cough (finding)"),
    ("sct", "260147004", "House dust mite (organism)", "environment", "low", "49727002", "Cough (finding)"),
    ("sct", "111088007", "Latex (substance)", "environment", "high", "247472004", "Wheal (finding)"),
)

PROCEDURES: dict[str, ProcedureDef] = {
    p.key: p
    for p in (
        ProcedureDef("depression_screen", "171207006", "Depression screening (procedure)", "96127", 25.0),
        ProcedureDef("med_rec", "430193006", "Medication reconciliation (procedure)"),
        ProcedureDef("substance_screen", "428211000124100", "Assessment of substance use (procedure)"),
        ProcedureDef("ecg", "29303009", "Electrocardiographic procedure (procedure)", "93000", 85.0),
        ProcedureDef("spirometry", "127783003", "Spirometry (procedure)", "94010", 95.0),
        ProcedureDef("anxiety_assess", "710841007", "Assessment of anxiety (procedure)"),
    )
}

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
