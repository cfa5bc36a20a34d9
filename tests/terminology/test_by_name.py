"""find_patients(condition=...) and the condition_without_lab report: words or codes resolved offline, checked
against independent computations over the raw resources of a demo practice (plus hand-made Conditions)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import simple_icd_10_cm as cm  # type: ignore[import-untyped]
from terminology_support import ICD, who

from fhirgate.app import build_gateway
from fhirgate.config import DataDir
from fhirgate.core.policy.rules import RateRule
from fhirgate.demo.generator import write_practice
from fhirgate.errors import AccessDenied, InvalidInput
from fhirgate.mcp.server import build_server
from fhirgate.policy_loader import load_policy
from fhirgate.service.context import RequestContext
from fhirgate.service.gateway import Gateway
from fhirgate.store.factory import open_store
from mcp import Client

TODAY = dt.date(2026, 11, 21)
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
SENSITIVE = {"R", "V", "ETH", "PSY", "HIV", "STD", "SDV", "SEX", "BH", "GDIS", "42CFRPart2"}
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
USER = who("user/*.rs")  # no role claim, no fhirUser: the default role (practice_staff), practice-wide


def _dm(id_: str, patient: str, labels: list[str] | None = None, code: str = "E11.65") -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Condition",
        "id": id_,
        "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
        "code": {"coding": [{"system": ICD, "code": code, "display": "hand-made"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "onsetDateTime": "2024-02-03",
    }
    if labels:
        body["meta"] = {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": c}
                                     for c in labels]}  # fmt: skip
    return body


@dataclass
class Practice:
    """The demo data dir and its raw resources, read back from the store (not through fhirgate's policy)."""

    data: DataDir
    by_type: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    optouts: set[str] = field(default_factory=set)
    hidden_patient: str = ""  # has only a labelled E11.65 Condition
    plain_patient: str = ""  # has only an unlabelled E11.65 Condition
    fracture_patient: str = ""  # has an S72.001A Condition (S72 has more codes below than one OR-list takes)


def _labelled(body: dict[str, Any]) -> bool:
    return any(c.get("code") in SENSITIVE for c in (body.get("meta") or {}).get("security", []))


def _subject(body: dict[str, Any]) -> str | None:
    ref = (body.get("subject") or {}).get("reference", "")
    return ref.removeprefix("Patient/") if ref.startswith("Patient/") else None


def _codes(body: dict[str, Any]) -> set[tuple[str, str]]:
    return {(c.get("system"), c.get("code")) for c in (body.get("code") or {}).get("coding", [])}


def _status(body: dict[str, Any], element: str) -> str | None:
    codings = (body.get(element) or {}).get("coding") or [{}]
    code = codings[0].get("code")
    return str(code) if code is not None else None


@pytest.fixture(scope="module")
def practice(tmp_path_factory: pytest.TempPathFactory) -> Practice:
    data = DataDir(tmp_path_factory.mktemp("by-name")).ensure()
    store = open_store(data)
    try:
        write_practice(store, patients=60, seed=7, today=TODAY)
        out = Practice(data)
        for c in store.iter_type("Consent"):
            rule = {x.get("code") for x in (c.body.get("policyRule") or {}).get("coding", [])}
            if c.body.get("status") == "active" and "OPTOUT" in rule:
                out.optouts.add(c.body["patient"]["reference"].removeprefix("Patient/"))
        e11 = {
            _subject(c.body)
            for c in store.iter_type("Condition")
            if any(k.startswith("E11") for _, k in _codes(c.body))
        }
        free = sorted(
            p.id for p in store.iter_type("Patient")
            if p.id not in e11 and p.id not in out.optouts and not _labelled(p.body)
        )  # fmt: skip
        out.hidden_patient, out.plain_patient, out.fracture_patient = free[0], free[1], free[2]
        store.write(
            [
                _dm("byname-psy", free[0], ["PSY"]),
                _dm("byname-plain", free[1]),
                _dm("byname-s72", free[2], code="S72.001A"),
            ]
        )
        for rtype in ("Patient", "Condition", "Observation"):
            out.by_type[rtype] = [s.body for s in store.iter_type(rtype)]
    finally:
        store.close()
    assert out.optouts, "the demo practice has opted-out patients"
    return out


@pytest.fixture(scope="module")
def gateway(practice: Practice) -> Iterator[Gateway]:
    policy = dataclasses.replace(load_policy(None), rate_default=RateRule(1e9, 1e9))
    gw = build_gateway(practice.data, key=None, policy=policy)
    yield gw
    gw.close()


def _visible_patients(p: Practice) -> dict[str, dict[str, Any]]:
    return {b["id"]: b for b in p.by_type["Patient"] if not _labelled(b) and b["id"] not in p.optouts}


def _with_condition(p: Practice, codes: set[tuple[str, str]]) -> set[str]:
    """Oracle: patients a practice-wide default-role caller may see with an active, visible Condition in `codes`."""
    visible = _visible_patients(p)
    out: set[str] = set()
    for c in p.by_type["Condition"]:
        pid = _subject(c)
        if _status(c, "clinicalStatus") not in ("active", "recurrence", "relapse"):
            continue
        if _status(c, "verificationStatus") in ("refuted", "entered-in-error") or _labelled(c):
            continue
        if pid in visible and _codes(c) & codes:
            out.add(pid)
    return out


def _find_all(gw: Gateway, count: int = 50, **filters: str) -> tuple[set[str], list[dict[str, Any]]]:
    ids: list[str] = []
    pages: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = gw.find_patients(RequestContext(USER), filters=filters, count=count, cursor=cursor)
        pages.append(page)
        ids += [card["id"] for card in page["patients"]]
        cursor = page["page"]["next_cursor"]
        if cursor is None:
            assert len(ids) == len(set(ids)), "no patient on two pages"
            return set(ids), pages


E11_ALL = {(ICD, c) for c in ["E11", *cm.get_descendants("E11")]} | {(SNOMED, "44054006")}


def test_find_patients_by_words_equals_the_raw_conditions(gateway: Gateway, practice: Practice) -> None:
    expected = _with_condition(practice, E11_ALL)
    assert len(expected) >= 5, "the demo practice has type 2 diabetics"
    got, pages = _find_all(gateway, condition="type 2 diabetes")
    assert got == expected
    assert pages[0]["page"]["total"] == len(expected)
    matched = pages[0]["matched"]["condition"]
    assert matched["text"] == "type 2 diabetes" and matched["concept"] == "Type 2 diabetes mellitus"
    assert {f"{ICD}|E11", f"{ICD}|E11.9", f"{ICD}|E11.65", f"{SNOMED}|44054006"} <= set(matched["codes"])
    assert f"{ICD}|E10.9" not in matched["codes"]
    # Paging: small pages give the same patients; the same words and the code give the same answer.
    assert _find_all(gateway, count=3, condition="type 2 diabetes")[0] == expected
    assert _find_all(gateway, condition="E11")[0] == expected
    assert _find_all(gateway, condition=f"{ICD}|E11")[0] == expected


def test_condition_combines_with_demographic_filters(gateway: Gateway, practice: Practice) -> None:
    expected = _with_condition(practice, E11_ALL)
    genders = {pid: _visible_patients(practice)[pid].get("gender") for pid in expected}
    got, _ = _find_all(gateway, condition="diabetes", gender="female")
    assert got == {p for p, g in genders.items() if g == "female"}


def test_narrower_code_and_other_concepts(gateway: Gateway, practice: Practice) -> None:
    narrow = {(ICD, "E11.65")}
    assert _find_all(gateway, condition="E11.65")[0] == _with_condition(practice, narrow) == {practice.plain_patient}
    htn = {(ICD, "I10"), (SNOMED, "38341003")}
    got, pages = _find_all(gateway, condition="high blood pressure")
    assert got == _with_condition(practice, htn) and got
    assert pages[0]["matched"]["condition"]["codes"] == [f"{ICD}|I10", f"{SNOMED}|38341003"]


def test_withheld_condition_does_not_let_its_patient_through(gateway: Gateway, practice: Practice) -> None:
    got, pages = _find_all(gateway, condition="type 2 diabetes")
    assert practice.plain_patient in got  # the control: same code, no label
    assert practice.hidden_patient not in got  # only a PSY-labelled E11.65 Condition
    assert pages[0]["withheld"]["by_category"]  # the withheld Condition is counted, not shown
    # The patient exists and is visible by itself: only the labelled Condition was screened out.
    assert practice.hidden_patient in _find_all(gateway)[0]


def test_cursor_is_bound_to_the_condition(gateway: Gateway) -> None:
    first = gateway.find_patients(RequestContext(USER), filters={"condition": "diabetes"}, count=2)
    cursor = first["page"]["next_cursor"]
    assert cursor is not None
    with pytest.raises(InvalidInput) as err:
        gateway.find_patients(RequestContext(USER), filters={"condition": "hypertension"}, count=2, cursor=cursor)
    assert err.value.param == "cursor"
    with pytest.raises(InvalidInput):
        gateway.find_patients(RequestContext(USER), filters={}, count=2, cursor=cursor)


@pytest.mark.parametrize(
    ("value", "problem", "choices"),
    [
        ("diabtes", "close spellings", [f"{ICD}|E11", f"{ICD}|E10"]),
        ("hypertenson", "close spellings", [f"{ICD}|I10"]),
        ("kidney", "do not name one condition exactly", [ICD]),
        ("hypert", "do not name one condition exactly", [f"{ICD}|I10"]),
        ("zzqqxv", "no condition code matches", []),
        ("HbA1c", "no condition code matches", []),
        ("E99.99", "not an ICD-10-CM code", []),
        ("http://loinc.org|4548-4", "must be in another system", [SNOMED]),
        ("12345678", "not a code known here", []),
        ("   ", "non-empty", []),
        ("x" * 201, "too long", []),
    ],
)
def test_unclear_words_are_invalid_input_with_candidates(
    gateway: Gateway, value: str, problem: str, choices: list[str]
) -> None:
    with pytest.raises(InvalidInput) as err:
        gateway.find_patients(RequestContext(USER), filters={"condition": value})
    assert err.value.param == "condition"
    assert problem in err.value.problem
    for choice in choices:
        assert choice in (err.value.allowed or "")


def test_condition_needs_condition_search_scope(gateway: Gateway) -> None:
    with pytest.raises(AccessDenied) as err:
        gateway.find_patients(RequestContext(who("user/Patient.rs")), filters={"condition": "diabetes"})
    assert err.value.required_scope == "user/Condition.rs"


def test_large_icd_category_uses_the_prefix_path(gateway: Gateway, practice: Practice) -> None:
    below = {(ICD, c) for c in ["S72", *cm.get_descendants("S72")]}
    assert len(below) > 500
    got, pages = _find_all(gateway, condition="S72")
    assert got == _with_condition(practice, below) == {practice.fracture_patient}
    assert len(pages[0]["matched"]["condition"]["codes"]) == len(below)
    out = _report(gateway, "condition_without_lab", condition="S72", lab="A1c")
    with_dx, gaps = _gap_oracle(practice, below, {"4548-4"}, 12)
    assert {r["patient_id"] for r in out["rows"]} == set(gaps) and out["summary"]["patients"] == len(with_dx)
    assert out["summary"]["patients"] == (1 if practice.fracture_patient in with_dx else 0)


# -- condition_without_lab -----------------------------------------------------------------------------------------


def _report(gw: Gateway, name: str, **params: Any) -> dict[str, Any]:
    return gw.run_report(RequestContext(USER), name, {"today": TODAY.isoformat(), "limit": 200, **params})


def test_condition_without_lab_equals_diabetes_without_a1c(gateway: Gateway) -> None:
    general = _report(gateway, "condition_without_lab", condition="diabetes", lab="A1c", months=6)
    fixed = _report(gateway, "diabetes_without_a1c", months=6)
    assert fixed["rows"], "the demo practice has HbA1c gaps"
    assert [
        (r["patient_id"], r["condition_code"], r["onset"], r["last_result"], r["last_result_value"])
        for r in general["rows"]
    ] == [(r["patient_id"], r["condition_code"], r["onset"], r["last_a1c"], r["last_a1c_value"]) for r in fixed["rows"]]
    assert general["summary"] == {
        "gaps": fixed["summary"]["gaps"],
        "never_tested": fixed["summary"]["never_tested"],
        "patients": fixed["summary"]["diabetics"],
    }
    assert general["page"]["total_rows"] == fixed["page"]["total_rows"]
    resolution = general["definition"]["resolution"]
    assert "icd10cm E11" in resolution["condition"] and "snomed 44054006" in resolution["condition"]
    assert "loinc 4548-4" in resolution["lab"]
    assert general["headline"].endswith(".") and general["params"]["condition"] == "diabetes"


def _months_back(today: dt.date, months: int) -> dt.date:
    y, m = divmod(today.year * 12 + today.month - 1 - months, 12)
    d = today.day
    while True:
        try:
            return dt.date(y, m + 1, d)
        except ValueError:
            d -= 1


def _gap_oracle(
    p: Practice, cond: set[tuple[str, str]], lab: set[str], months: int
) -> tuple[set[str], dict[str, str | None]]:
    """(patients with the condition, gap patient -> last result effective), from the raw resources."""
    visible = _visible_patients(p)
    active = {
        pid for pid, b in visible.items()
        if b.get("active") is True and b.get("deceasedBoolean") is not True and "deceasedDateTime" not in b
    }  # fmt: skip
    with_dx = _with_condition(p, cond) & active
    last: dict[str, str] = {}
    for o in p.by_type["Observation"]:
        pid = _subject(o)
        if o.get("status") not in ("final", "amended", "corrected") or "effectiveDateTime" not in o or _labelled(o):
            continue
        if pid and any(s == LOINC and c in lab for s, c in _codes(o)):
            when = o["effectiveDateTime"]
            if pid not in last or dt.datetime.fromisoformat(when) > dt.datetime.fromisoformat(last[pid]):
                last[pid] = when
    cutoff = _months_back(TODAY, months)
    gaps = {pid: last.get(pid) for pid in with_dx if pid not in last or dt.date.fromisoformat(last[pid][:10]) < cutoff}
    return with_dx, gaps


@pytest.mark.parametrize(
    ("condition", "lab", "months", "cond_codes", "lab_codes"),
    [
        ("high blood pressure", "LDL", 12, {(ICD, "I10"), (SNOMED, "38341003")}, {"13457-7", "18262-6"}),
        ("I10", f"{LOINC}|2160-0", 6, {(ICD, "I10"), (SNOMED, "38341003")}, {"2160-0"}),
        ("hyperlipidemia", "creatinine", 3, {(ICD, "E78.5"), (SNOMED, "55822004")}, {"2160-0"}),
    ],
)
def test_condition_without_lab_matches_an_independent_oracle(
    gateway: Gateway,
    practice: Practice,
    condition: str,
    lab: str,
    months: int,
    cond_codes: set[tuple[str, str]],
    lab_codes: set[str],
) -> None:
    out = _report(gateway, "condition_without_lab", condition=condition, lab=lab, months=months)
    with_dx, gaps = _gap_oracle(practice, cond_codes, lab_codes, months)
    assert gaps and len(gaps) < len(with_dx), "the pair has both gaps and current results"
    assert {r["patient_id"]: r["last_result"] for r in out["rows"]} == gaps
    assert out["summary"] == {
        "gaps": len(gaps),
        "never_tested": sum(1 for v in gaps.values() if v is None),
        "patients": len(with_dx),
    }
    assert all(r["last_result_code"] in lab_codes for r in out["rows"] if r["last_result"])
    lasts = [(r["last_result"] is not None, r["last_result"] or "") for r in out["rows"]]
    assert lasts == sorted(lasts)  # never tested first, then oldest


def test_condition_without_lab_pages(gateway: Gateway) -> None:
    whole = _report(gateway, "condition_without_lab", condition="hypertension", lab="LDL")
    first = _report(gateway, "condition_without_lab", condition="hypertension", lab="LDL", limit=3)
    second = _report(gateway, "condition_without_lab", condition="hypertension", lab="LDL", limit=3, offset=3)
    assert first["rows"] + second["rows"] == whole["rows"][:6]
    assert first["page"]["next_offset"] == 3


@pytest.mark.parametrize(
    ("params", "param", "problem"),
    [
        ({"condition": "diabtes", "lab": "A1c"}, "condition", "close spellings"),
        ({"condition": "diabetes", "lab": "nosuchlabword"}, "lab", "no lab code matches"),
        ({"condition": "diabetes", "lab": "diabetes"}, "lab", "no lab code matches"),
        ({"condition": "diabetes", "lab": "E11"}, "lab", "must be in another system"),
        ({"condition": "diabetes", "lab": ""}, "lab", "non-empty"),
        ({"condition": "diabetes", "lab": "A1c", "codes": "x') OR 1=1 --"}, "params", "unknown parameter"),
    ],
)
def test_condition_without_lab_bad_params(gateway: Gateway, params: dict[str, Any], param: str, problem: str) -> None:
    with pytest.raises(InvalidInput) as err:
        _report(gateway, "condition_without_lab", **params)
    assert err.value.param == param and problem in err.value.problem


def test_condition_without_lab_hides_withheld_conditions(gateway: Gateway, practice: Practice) -> None:
    out = _report(gateway, "condition_without_lab", condition="E11.65", lab="A1c", months=6)
    listed = {r["patient_id"] for r in out["rows"]}
    assert practice.plain_patient in listed and practice.hidden_patient not in listed


# -- the MCP tool ---------------------------------------------------------------------------------------------------


async def test_mcp_find_patients_with_condition(gateway: Gateway, practice: Practice) -> None:
    async with Client(build_server(gateway, transport="in-memory", principal=USER)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        schema = tools["find_patients"].input_schema
        assert "condition" in schema["properties"] and "words" in schema["properties"]["condition"]["description"]
        result = await client.call_tool("find_patients", {"condition": "type 2 diabetes", "count": 50})
        assert not result.is_error, result.content
        data = result.structured_content
        assert data is not None
        assert {p["id"] for p in data["patients"]} == _with_condition(practice, E11_ALL)
        assert data["matched"]["condition"]["concept"] == "Type 2 diabetes mellitus"
        bad = await client.call_tool("find_patients", {"condition": "diabtes"})
        assert bad.is_error and "condition:" in bad.content[0].text and f"{ICD}|E11" in bad.content[0].text
