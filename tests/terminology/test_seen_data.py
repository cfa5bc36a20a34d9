"""Codes seen in the data: the demo practice (ICD-10-CM, labels) and Synthea (SNOMED, LOINC, RxNorm, CVX)."""

from __future__ import annotations

import pytest
from terminology_support import ICD, ctx, who

from fhirgate.audit.log import AuditLog
from fhirgate.config import DataDir
from fhirgate.errors import AccessDenied
from fhirgate.service.gateway import Gateway
from fhirgate.store.factory import open_store
from fhirgate.terminology.lookup import Terminology
from fhirgate.terminology.seen import SeenCode, SeenCodes, read_seen
from fhirgate.terminology.systems import CVX, LOINC, RXNORM, SNOMED

SENSITIVE = {"HIV", "PSY", "ETH", "42CFRPart2", "R", "NORDSCLCD"}


def _raw_codes(data: DataDir, rtype: str, element: str, *, unlabelled: bool) -> set[tuple[str, str]]:
    store = open_store(data, create=False)
    try:
        out: set[tuple[str, str]] = set()
        for r in store.iter_type(rtype):
            if unlabelled and (r.body.get("meta") or {}).get("security"):
                continue
            for c in (r.body.get(element) or {}).get("coding", []):
                if c.get("system") and c.get("code"):
                    out.add((c["system"], c["code"]))
        return out
    finally:
        store.close()


def test_seen_codes_match_the_raw_resources_and_leave_labelled_ones_out(demo_dir: DataDir) -> None:
    seen = read_seen(demo_dir.store_path)
    by_type: dict[str, set[tuple[str, str]]] = {}
    for c in seen:
        by_type.setdefault(c.resource_type, set()).add((c.system, c.code))
    assert by_type["Condition"] == _raw_codes(demo_dir, "Condition", "code", unlabelled=True)
    assert by_type["Immunization"] == _raw_codes(demo_dir, "Immunization", "vaccineCode", unlabelled=True)
    labelled_only = _raw_codes(demo_dir, "Condition", "code", unlabelled=False) - by_type["Condition"]
    assert labelled_only, "the demo practice labels some diagnoses (HIV, substance use...)"
    assert all(c.display for c in seen if c.resource_type == "Condition")


def test_seen_cache_rebuilds_only_when_the_fingerprint_changes() -> None:
    calls: list[int] = []
    version = ["a"]

    def source() -> list[SeenCode]:
        calls.append(1)
        return [SeenCode(LOINC, "1-1", f"widget level {version[0]}", "Observation")]

    cache = SeenCodes(source, lambda: version[0], ttl=0.0)
    term = Terminology(cache)
    assert term.lookup(text="widget").matches[0].display == "widget level a"
    assert term.lookup(text="widget").matches[0].display == "widget level a"
    assert len(calls) == 1
    version[0] = "b"
    assert term.lookup(text="widget").matches[0].display == "widget level b"
    assert len(calls) == 2


def test_demo_lookup_marks_codes_the_practice_uses(demo_gateway: Gateway) -> None:
    out = demo_gateway.lookup_code(ctx(who("system/*.rs")), text="type 2 diabetes without complications")
    top = out["matches"][0]
    assert (top["system"], top["code"]) == (ICD, "E11.9") and top["seen_in_data"] is True
    hidden = demo_gateway.lookup_code(ctx(who("system/*.rs")), code="B20", system="icd10cm")
    assert hidden["matches"][0]["seen_in_data"] is False  # only in labelled (HIV) records: never revealed


@pytest.mark.parametrize(
    ("rtype", "element", "system"),
    [
        ("Condition", "code", SNOMED),
        ("Observation", "code", LOINC),
        ("MedicationRequest", "medicationCodeableConcept", RXNORM),
        ("Immunization", "vaccineCode", CVX),
    ],
)
def test_synthea_codes_resolve_by_code(
    synthea_gateway: Gateway, synthea_data: DataDir, rtype: str, element: str, system: str
) -> None:
    raw = sorted(c for c in _raw_codes(synthea_data, rtype, element, unlabelled=True) if c[0] == system)
    assert raw, f"the Synthea sample has {system} codes on {rtype}"
    p = who("system/*.rs")
    for sys_, code in raw[:8]:
        out = synthea_gateway.lookup_code(ctx(p), code=code, system=sys_)
        assert out["status"] == "match", (rtype, code)
        hit = next(m for m in out["matches"] if m["system"] == sys_)
        assert hit["seen_in_data"] is True and hit["display"]


def test_synthea_words_find_codes_in_the_data(synthea_gateway: Gateway, synthea_data: DataDir) -> None:
    p = who("system/*.rs")
    meds = _raw_codes(synthea_data, "MedicationRequest", "medicationCodeableConcept", unlabelled=True)
    out = synthea_gateway.lookup_code(ctx(p), text="atorvastatin", limit=20)
    seen = {(m["system"], m["code"]) for m in out["matches"] if m["source"] == "seen-in-data"}
    assert seen and seen <= meds  # product codes (SCD) carried by the orders
    assert out["matches"][0]["code"] == "83367"  # the curated ingredient first
    flu = synthea_gateway.lookup_code(ctx(p), text="influenza seasonal injectable", system="cvx")
    assert any(m["code"] == "140" and m["seen_in_data"] for m in flu["matches"])
    misspelt = synthea_gateway.lookup_code(ctx(p), text="hemoglobn a1c")
    assert misspelt["matches"][0]["code"] == "4548-4" and misspelt["corrections"]


def test_patient_confined_callers_get_no_practice_wide_codes(synthea_gateway: Gateway, synthea_data: DataDir) -> None:
    store = open_store(synthea_data, create=False)
    try:
        patient = sorted(r.id for r in store.iter_type("Patient"))[0]
    finally:
        store.close()
    confined = who("patient/*.rs", patient=patient)
    out = synthea_gateway.lookup_code(ctx(confined), text="atorvastatin", limit=20)
    assert out["seen_in_data_types"] == []
    assert all(m["source"] != "seen-in-data" and not m["seen_in_data"] for m in out["matches"])
    wide = synthea_gateway.lookup_code(ctx(who("system/*.rs")), text="atorvastatin", limit=20)
    assert set(wide["seen_in_data_types"]) == {"Condition", "Observation", "MedicationRequest", "Immunization"}


def test_lookup_is_audited_and_governed(demo_gateway: Gateway) -> None:
    log = demo_gateway.audit_sink
    assert isinstance(log, AuditLog)
    before = log.count()
    demo_gateway.lookup_code(ctx(who("system/*.rs")), text="asthma")
    assert log.count() == before + 1
    record = log.tail(1)[0].record
    assert record.interaction == "lookup" and record.outcome == "success"
    assert not record.patients  # terminology touches no patient
    with pytest.raises(AccessDenied):
        demo_gateway.lookup_code(ctx(who("system/*.rs", role="no-such-role")), text="asthma")
    assert log.count() == before + 2  # the refusal is audited too
