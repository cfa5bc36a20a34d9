"""Code tables for what the demo practice measures and gives: vitals, labs and panels (LOINC, UCUM), vaccines (CVX),
allergens and in-clinic procedures (SNOMED, CPT).
"""

from __future__ import annotations

from dataclasses import dataclass


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
class ProcedureDef:
    """A procedure done in clinic (SNOMED), billed under a CPT code when `cpt` is set."""

    key: str
    snomed: str
    display: str
    cpt: str | None = None
    price: float = 0.0


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
