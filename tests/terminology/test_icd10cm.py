"""ICD-10-CM wrapper: normalization, displays and hierarchy checked against simple_icd_10_cm itself."""

from __future__ import annotations

import pytest
import simple_icd_10_cm as cm  # type: ignore[import-untyped]

from fhirgate.errors import InvalidInput
from fhirgate.terminology import icd10cm
from fhirgate.terminology.lookup import expand_below


@pytest.mark.parametrize(
    ("given", "expected"),
    [("E11.9", "E11.9"), ("e119", "E11.9"), (" E11 ", "E11"), ("i10", "I10"), ("S72.001A", "S72.001A")],
)
def test_normalize_accepts_dotted_undotted_any_case(given: str, expected: str) -> None:
    assert icd10cm.normalize(given) == expected
    assert icd10cm.is_valid(given)


@pytest.mark.parametrize("bad", ["", "E11.", "E1", "E08-E13", "4", "Z99.999999", "E11.9; DROP", "11.9", "E11.99"])
def test_normalize_rejects_non_codes(bad: str) -> None:
    assert icd10cm.normalize(bad) is None
    assert not icd10cm.is_valid(bad)


def test_display_is_the_cms_description() -> None:
    assert icd10cm.display("E119") == cm.get_description("E11.9") == "Type 2 diabetes mellitus without complications"
    assert icd10cm.display("NOPE") is None


def test_ancestors_nearest_first_with_kinds() -> None:
    items = icd10cm.ancestors("E11.65")
    assert [i.code for i in items] == ["E11.6", "E11", "E08-E13", "4"]
    assert [i.kind for i in items] == ["subcategory", "category", "block", "chapter"]
    assert items[2].display == cm.get_description("E08-E13")


def test_e11_below_is_the_code_and_all_descendants() -> None:
    expanded = expand_below("http://hl7.org/fhir/sid/icd-10-cm", "E11")
    expected = ["E11", *cm.get_descendants("E11")]
    assert expanded == expected
    assert len(expanded) == 117
    assert all(code.startswith("E11") for code in expanded)
    assert "E10.9" not in expanded and "E13.9" not in expanded
    # An independent check: every ICD-10-CM code whose ancestors include E11.
    codes = [c for c in cm.get_all_codes(True) if c.startswith("E") and cm.is_category_or_subcategory(c)]
    independent = {c for c in codes if "E11" in cm.get_ancestors(c)}
    assert set(expanded) == independent | {"E11"}


def test_expand_below_of_a_leaf_is_itself_and_aliases_work() -> None:
    assert expand_below("icd10cm", "e119") == ["E11.9"]


def test_expand_below_refuses_other_systems_and_unknown_codes() -> None:
    with pytest.raises(InvalidInput) as exc:
        expand_below("http://loinc.org", "4548-4")
    assert exc.value.param == "system" and "ICD-10-CM" in exc.value.message
    with pytest.raises(InvalidInput) as exc:
        expand_below("icd10cm", "E99.99")
    assert exc.value.param == "code"
    with pytest.raises(InvalidInput):
        expand_below("nonsense", "E11")


def test_all_codes_are_categories_and_subcategories_only() -> None:
    items = icd10cm.all_codes()
    assert len(items) > 90_000
    kinds = {i.kind for i in items}
    assert kinds == {"category", "subcategory"}
    assert not any(i.code in {"4", "E08-E13"} for i in items)
