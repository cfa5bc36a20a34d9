"""search_resources with ICD-10-CM `code:below` on the demo practice, checked against the raw resources."""

from __future__ import annotations

from typing import Any

import pytest
import simple_icd_10_cm as cm  # type: ignore[import-untyped]
from terminology_support import ICD, ctx, ids_with_codes, who

from fhirgate.config import DataDir
from fhirgate.errors import InvalidInput
from fhirgate.service.code_expansion import MAX_EXPANDED, expand_code_below
from fhirgate.service.gateway import Gateway
from fhirgate.store.factory import open_store


def _all_ids(gateway: Gateway, params: dict[str, Any]) -> set[str]:
    p = who("system/*.rs")
    ids: set[str] = set()
    cursor = None
    while True:
        page = gateway.search_resources(ctx(p), "Condition", params, count=100, cursor=cursor)
        ids |= {e["id"] for e in page["entries"]}
        cursor = page["page"]["next_cursor"]
        if cursor is None:
            return ids


def _raw(demo_dir: DataDir, codes: set[str]) -> set[str]:
    store = open_store(demo_dir, create=False)
    try:
        return ids_with_codes(store, "Condition", ICD, codes)
    finally:
        store.close()


@pytest.mark.parametrize("value", [f"{ICD}|E11", "E11", "e11", f"{ICD}|E11,{ICD}|I10"])
def test_code_below_matches_an_independent_filter(demo_gateway: Gateway, demo_dir: DataDir, value: str) -> None:
    roots = ["E11", "I10"] if "I10" in value else ["E11"]
    codes = {c for r in roots for c in [r, *cm.get_descendants(r)]}
    expected = _raw(demo_dir, codes)
    assert expected, "the demo practice has type 2 diabetes"
    got = _all_ids(demo_gateway, {"code:below": value})
    assert got == expected
    assert "term-e10" not in got and "term-undotted" not in got  # E10.9 is not below E11; E119 is not FHIR's form


def test_plain_code_search_is_unchanged(demo_gateway: Gateway, demo_dir: DataDir) -> None:
    assert _all_ids(demo_gateway, {"code": f"{ICD}|E11"}) == _raw(demo_dir, {"E11"})  # exact, no expansion


def test_large_category_uses_the_prefix_path_with_the_same_result(demo_gateway: Gateway, demo_dir: DataDir) -> None:
    assert len(cm.get_descendants("S72")) > MAX_EXPANDED
    rewritten = expand_code_below("Condition", [("code:below", "s72")])
    assert rewritten == [("code:below", f"{ICD}|S72")]
    got = _all_ids(demo_gateway, {"code:below": "S72"})
    assert got == _raw(demo_dir, set(cm.get_descendants("S72"))) == {"term-s72", "term-s72b"}
    narrow = _all_ids(demo_gateway, {"code:below": "S72.0"})  # 300-ish codes: the list path
    assert narrow == {"term-s72"}


def test_rewrite_shape() -> None:
    pairs = expand_code_below(
        "Condition", [("code:below", "E11.6"), ("patient", "p1"), ("_profile:below", "http://x/")]
    )
    name, value = pairs[0]
    assert name == "code"
    assert value.split(",") == [f"{ICD}|{c}" for c in ["E11.6", *cm.get_descendants("E11.6")]]
    assert pairs[1:] == [("patient", "p1"), ("_profile:below", "http://x/")]  # uri :below untouched


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("E99.99", "not an ICD-10-CM code"),
        (f"{ICD}|NOPE", "not an ICD-10-CM code"),
        ("http://loinc.org|4548-4", "only the ICD-10-CM hierarchy"),
        ("http://snomed.info/sct|44054006", "only the ICD-10-CM hierarchy"),
        ("|E11", "only the ICD-10-CM hierarchy"),
        ("E11,", "empty value"),
        ("E08-E13", "not an ICD-10-CM code"),
    ],
)
def test_bad_below_values_name_the_parameter(demo_gateway: Gateway, value: str, problem: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        demo_gateway.search_resources(ctx(who("system/*.rs")), "Condition", {"code:below": value})
    assert exc.value.param == "params.code:below"
    assert problem in exc.value.message


def test_below_on_other_token_params_and_types(demo_gateway: Gateway) -> None:
    # Observation.code with an ICD-10-CM parent is valid (no rows); LOINC below is refused.
    page = demo_gateway.search_resources(ctx(who("system/*.rs")), "Observation", {"code:below": "E11"})
    assert page["entries"] == []
    with pytest.raises(InvalidInput):
        demo_gateway.search_resources(ctx(who("system/*.rs")), "Observation", {"code:below": "http://loinc.org|4548"})
