"""Terminology.lookup offline (ICD-10-CM + curated synonyms): words, misspellings, unknown words, codes, bad input."""

from __future__ import annotations

import tomllib
from importlib import resources

import pytest

from fhirgate.errors import ConfigError, InvalidInput
from fhirgate.terminology import icd10cm
from fhirgate.terminology.lookup import Terminology
from fhirgate.terminology.matching import osa_distance, tokens
from fhirgate.terminology.synonyms import concepts, parse_concepts
from fhirgate.terminology.systems import CVX, ICD10CM, LOINC, RXNORM, SNOMED, resolve_system

# The curated list (the brief's, plus glucose in blood and arterial O2 saturation), restated independently of
# synonyms.toml: word -> the codes it must return.
EXPECTED = {
    "HbA1c": {(LOINC, "4548-4")},
    "glycated hemoglobin": {(LOINC, "4548-4")},
    "LDL": {(LOINC, "13457-7"), (LOINC, "18262-6")},
    "HDL": {(LOINC, "2085-9")},
    "total cholesterol": {(LOINC, "2093-3")},
    "triglycerides": {(LOINC, "2571-8")},
    "eGFR": {(LOINC, "33914-3"), (LOINC, "62238-1"), (LOINC, "98979-8")},
    "creatinine": {(LOINC, "2160-0")},
    "glucose": {(LOINC, "2345-7"), (LOINC, "2339-0")},
    "TSH": {(LOINC, "3016-3")},
    "potassium": {(LOINC, "2823-3")},
    "sodium": {(LOINC, "2951-2")},
    "BMI": {(LOINC, "39156-5")},
    "blood pressure": {(LOINC, "85354-9")},
    "systolic": {(LOINC, "8480-6")},
    "diastolic": {(LOINC, "8462-4")},
    "heart rate": {(LOINC, "8867-4")},
    "body weight": {(LOINC, "29463-7")},
    "height": {(LOINC, "8302-2")},
    "temperature": {(LOINC, "8310-5")},
    "O2 sat": {(LOINC, "59408-5"), (LOINC, "2708-6")},
    "type 2 diabetes": {(ICD10CM, "E11"), (SNOMED, "44054006")},
    "type 1 diabetes": {(ICD10CM, "E10"), (SNOMED, "46635009")},
    "hypertension": {(ICD10CM, "I10"), (SNOMED, "38341003")},
    "high blood pressure": {(ICD10CM, "I10"), (SNOMED, "38341003")},
    "hyperlipidemia": {(ICD10CM, "E78.5"), (SNOMED, "55822004")},
    "asthma": {(ICD10CM, "J45"), (SNOMED, "195967001")},
    "COPD": {(ICD10CM, "J44"), (SNOMED, "13645005")},
    "depression": {(ICD10CM, "F32"), (SNOMED, "35489007")},
    "anxiety": {(ICD10CM, "F41"), (SNOMED, "197480006")},
    "obesity": {(ICD10CM, "E66"), (SNOMED, "414916001")},
    "CKD": {(ICD10CM, "N18"), (SNOMED, "709044004")},
    "heart failure": {(ICD10CM, "I50"), (SNOMED, "84114007")},
    "atrial fibrillation": {(ICD10CM, "I48"), (SNOMED, "49436004")},
    "metformin": {(RXNORM, "6809")},
    "statins": {(RXNORM, "83367"), (RXNORM, "36567"), (RXNORM, "301542"), (RXNORM, "42463")},
    "lisinopril": {(RXNORM, "29046")},
    "amlodipine": {(RXNORM, "17767")},
    "insulin glargine": {(RXNORM, "274783")},
    "levothyroxine": {(RXNORM, "10582")},
    "albuterol": {(RXNORM, "435")},
    "sertraline": {(RXNORM, "36437")},
    "flu shot": {(CVX, "140"), (CVX, "150"), (CVX, "158"), (CVX, "141")},
    "covid vaccine": {(CVX, "208"), (CVX, "213"), (CVX, "300"), (CVX, "301")},
    "Tdap": {(CVX, "115")},
    "pneumococcal vaccine": {(CVX, "33"), (CVX, "133"), (CVX, "215")},
    "shingles vaccine": {(CVX, "187")},
    "hepatitis B vaccine": {(CVX, "08"), (CVX, "43")},
}


@pytest.mark.parametrize("word", sorted(EXPECTED))
def test_curated_words_rank_their_codes_first(offline: Terminology, word: str) -> None:
    want = EXPECTED[word]
    result = offline.lookup(text=word, limit=len(want))
    assert result.status == "match"
    assert {(c.system, c.code) for c in result.matches} == want
    assert all(c.source == "synonym" and c.match == "exact" and c.score == 1.0 for c in result.matches)


def test_synonym_icd_codes_are_valid_and_displays_come_from_cms() -> None:
    for concept in concepts():
        for c in concept.codes:
            if c.system == ICD10CM:
                assert icd10cm.display(c.code) == c.display


def test_shipped_file_holds_only_the_curated_list() -> None:
    files = {p.name for p in resources.files("fhirgate.terminology").iterdir() if p.is_file()}
    data = {f for f in files if not f.endswith(".py")}
    assert data == {"synonyms.toml"}  # no LOINC, SNOMED CT or RxNorm tables
    parsed = tomllib.loads(resources.files("fhirgate.terminology").joinpath("synonyms.toml").read_text())
    assert len(parsed["concept"]) == len(concepts()) < 100


@pytest.mark.parametrize(
    ("typo", "fixed", "code"),
    [
        ("diabtes", "diabetes", (ICD10CM, "E11")),
        ("hypertenson", "hypertension", (ICD10CM, "I10")),
        ("metfromin", "metformin", (RXNORM, "6809")),
        ("astma", "asthma", (ICD10CM, "J45")),
        ("cholestrol", "cholesterol", (LOINC, "2093-3")),
        ("atorvastatine", "atorvastatin", (RXNORM, "83367")),
    ],
)
def test_misspellings_are_corrected_and_marked(
    offline: Terminology, typo: str, fixed: str, code: tuple[str, str]
) -> None:
    result = offline.lookup(text=typo, limit=5)
    assert result.status == "match"
    assert fixed in result.corrections[typo]
    assert code in {(c.system, c.code) for c in result.matches[:2]}
    assert all(c.match == "corrected" and c.score < 1.0 for c in result.matches)


def test_a1c_and_case_and_accents(offline: Terminology) -> None:
    for text in ("a1c", "A1C", "  HbA1c ", "Hémoglobin A1c"):
        top = offline.lookup(text=text, limit=1).matches[0]
        assert (top.system, top.code) == (LOINC, "4548-4"), text


def test_icd_descriptions_are_searchable(offline: Terminology) -> None:
    result = offline.lookup(text="type 2 diabetes with hyperglycemia", limit=3)
    assert result.matches[0].code == "E11.65" and result.matches[0].source == "icd10cm"
    prefix = offline.lookup(text="hyperten", limit=2)
    assert prefix.status == "match" and prefix.matches[0].match == "prefix"


@pytest.mark.parametrize("text", ["xyzzy", "qwertyuiop", "zzzz blorb"])
def test_unknown_words_are_an_explicit_no_match(offline: Terminology, text: str) -> None:
    result = offline.lookup(text=text)
    assert result.status == "no-match"
    assert result.matches == [] and result.total == 0
    assert "not a code" in result.note and "NOT matches" in result.note
    assert result.suggestions == []


def test_partial_words_come_back_as_suggestions_never_matches(offline: Terminology) -> None:
    result = offline.lookup(text="diabetes purplewidget")
    assert result.status == "no-match" and result.matches == []
    assert result.suggestions and all(s.match == "partial" for s in result.suggestions)
    assert (ICD10CM, "E11") in {(s.system, s.code) for s in result.suggestions}
    data = result.to_dict()
    assert data["matches"] == [] and data["suggestions"][0]["match"] == "partial"


def test_system_filter(offline: Terminology) -> None:
    result = offline.lookup(text="diabetes", system="snomed")
    assert result.matches and {c.system for c in result.matches} == {SNOMED}
    icd = offline.lookup(text="diabetes", system=ICD10CM, limit=50)
    assert {c.system for c in icd.matches} == {ICD10CM} and icd.total > 100


def test_code_lookup_icd_with_hierarchy(offline: Terminology) -> None:
    result = offline.lookup(code="e11")
    assert result.status == "match" and result.mode == "code"
    top = result.matches[0]
    assert (top.system, top.code, top.display) == (ICD10CM, "E11", "Type 2 diabetes mellitus")
    h = result.hierarchy
    assert h is not None
    assert [a["code"] for a in h["ancestors"]] == ["E08-E13", "4"]
    assert h["descendants_total"] == 116 and len(h["descendants"]) == 50 and h["descendants_omitted"] == 66
    assert h["descendants"][0] == {"code": "E11.0", "display": "Type 2 diabetes mellitus with hyperosmolarity"}
    assert h["below_search"] == {"param": "code:below", "value": f"{ICD10CM}|E11"}


def test_code_lookup_other_systems_and_system_bar_code(offline: Terminology) -> None:
    loinc = offline.lookup(code="http://loinc.org|4548-4")
    assert loinc.status == "match" and loinc.matches[0].source == "synonym" and loinc.hierarchy is None
    ambiguous = offline.lookup(code="435")  # RxNorm albuterol; nothing else in the curated list
    assert {(c.system, c.code) for c in ambiguous.matches} == {(RXNORM, "435")}
    unknown = offline.lookup(code="99999-9", system="loinc")
    assert unknown.status == "no-match" and "no full" in unknown.note
    not_icd = offline.lookup(code="E99.99", system="icd10cm")
    assert not_icd.status == "no-match" and not_icd.matches == []


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({}, "text"),
        ({"text": "asthma", "code": "J45"}, "text"),
        ({"text": ""}, "text"),
        ({"text": "   "}, "text"),
        ({"text": "of the"}, "text"),
        ({"text": "x" * 201}, "text"),
        ({"text": " ".join(f"word{i}" for i in range(13))}, "text"),
        ({"text": "asthma", "system": "icd9"}, "system"),
        ({"text": "asthma", "system": ""}, "system"),
        ({"text": "asthma", "limit": 0}, "limit"),
        ({"text": "asthma", "limit": 51}, "limit"),
        ({"text": "asthma", "limit": True}, "limit"),
        ({"code": "E11; drop"}, "code"),
        ({"code": ""}, "code"),
        ({"code": "x" * 200}, "code"),
        ({"code": "http://example.org|E11"}, "code"),
        ({"code": "http://loinc.org|4548-4", "system": "snomed"}, "system"),
        ({"text": 42}, "text"),
    ],
)
def test_bad_input_names_the_parameter(offline: Terminology, kwargs: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        offline.lookup(**kwargs)  # type: ignore[arg-type]
    assert exc.value.param == param


def test_system_aliases() -> None:
    assert resolve_system("ICD10CM") == ICD10CM
    assert resolve_system("http://loinc.org/") == LOINC
    assert resolve_system(None) is None


def test_matching_primitives() -> None:
    assert osa_distance("metfromin", "metformin", 2) == 1  # adjacent transposition
    assert osa_distance("diabtes", "diabetes", 2) == 1
    assert osa_distance("abc", "xyz", 1) == 2  # bounded: limit + 1
    assert tokens("Essential hypertension (disorder)") == ("essential", "hypertension")
    assert tokens("LDL-C of the blood") == ("ldl", "c", "blood")


def test_bad_synonym_entries_fail_at_load() -> None:
    good = {"name": "X", "kind": "lab", "terms": ["x"], "codes": [{"system": "loinc", "code": "1-1", "display": "X"}]}
    assert parse_concepts({"concept": [good]})[0].codes[0].system == LOINC
    for bad in (
        {**good, "kind": "gadget"},
        {**good, "terms": []},
        {**good, "codes": [{"system": "icd9", "code": "1", "display": "X"}]},
        {**good, "codes": [{"system": "icd10cm", "code": "E99.99"}]},
        {**good, "codes": [{"system": "loinc", "code": "1-1"}]},
    ):
        with pytest.raises(ConfigError):
            parse_concepts({"concept": [bad]})
