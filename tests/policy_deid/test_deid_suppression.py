"""Small-cell suppression (CMS policy: 1-10 shown as "<11") and complementary suppression."""

from __future__ import annotations

from typing import Any

import pytest

from fhirgate.core.policy.suppression import suppress_rows, suppress_small_cells, suppressed_label
from fhirgate.errors import InvalidInput


@pytest.mark.parametrize(("value", "shown"), [(0, 0), (1, "<11"), (10, "<11"), (11, 11), (500, 500)])
def test_single_cells(value: int, shown: int | str) -> None:
    assert suppress_small_cells(value) == shown


def test_threshold_and_bad_input() -> None:
    assert suppress_small_cells(5, threshold=5) == 5 and suppress_small_cells(4, threshold=5) == "<5"
    assert suppressed_label() == "<11"
    for bad in (-1, True, 2.5, "3"):
        with pytest.raises(InvalidInput):
            suppress_small_cells(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        suppress_small_cells(3, threshold=1)


def _column(rows: list[dict[str, Any]], col: str = "n") -> list[Any]:
    return [r[col] for r in rows]


def test_complementary_in_a_column() -> None:
    rows = [{"g": "a", "n": 120}, {"g": "b", "n": 3}, {"g": "c", "n": 40}, {"g": "d", "n": 25}]
    out = suppress_rows(rows, ["n"])
    # one primary cell (3): the smallest other (25) goes too, so total - shown no longer gives 3
    assert _column(out) == [120, "<11", 40, "<11"]
    assert rows[1]["n"] == 3  # input untouched


def test_no_complementary_when_two_already_hidden() -> None:
    rows = [{"n": 120}, {"n": 3}, {"n": 4}, {"n": 25}]
    assert _column(suppress_rows(rows, ["n"])) == [120, "<11", "<11", 25]


def test_zero_cells_can_be_complementary() -> None:
    rows = [{"n": 50}, {"n": 2}, {"n": 0}]
    assert _column(suppress_rows(rows, ["n"])) == [50, "<11", "<11"]


def test_total_row_suppressed_when_nothing_else_to_hide() -> None:
    rows = [{"g": "only", "n": 7}, {"g": "total", "n": 7}]
    out = suppress_rows(rows, ["n"], is_total=lambda r: r["g"] == "total")
    assert _column(out) == ["<11", "<11"]
    rows = [{"g": "only", "n": 7}, {"g": "total", "n": 70}]
    out = suppress_rows(rows, ["n"], is_total=lambda r: r["g"] == "total")
    assert _column(out) == ["<11", "<11"]


def test_total_row_not_used_as_complement_when_body_has_cells() -> None:
    rows = [{"g": "a", "n": 5}, {"g": "b", "n": 30}, {"g": "c", "n": 60}, {"g": "t", "n": 95}]
    out = suppress_rows(rows, ["n"], is_total=lambda r: r["g"] == "t")
    assert _column(out) == ["<11", "<11", 60, 95]


def test_rows_with_several_count_columns() -> None:
    rows = [
        {"g": "a", "male": 5, "female": 40, "other": 30},
        {"g": "b", "male": 50, "female": 60, "other": 70},
        {"g": "c", "male": 80, "female": 90, "other": 20},
    ]
    out = suppress_rows(rows, ["male", "female", "other"])
    hidden = [(i, c) for i, r in enumerate(out) for c in ("male", "female", "other") if r[c] == "<11"]
    # row a needs a second hidden cell, and so does every column touched: no row or column has exactly one
    for i in range(3):
        assert sum(1 for j, _ in hidden if j == i) != 1
    for col in ("male", "female", "other"):
        assert sum(1 for _, c in hidden if c == col) != 1
    assert out[0]["male"] == "<11"


def test_non_count_cells_left_alone() -> None:
    rows: list[dict[str, Any]] = [{"n": None}, {"n": "x"}, {"n": 3}, {"n": 30}, {"n": 31}]
    assert _column(suppress_rows(rows, ["n", "missing"])) == [None, "x", "<11", "<11", 31]
