"""The fast date path in extract agrees exactly with core.fhir.dates.parse_date_range."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhirgate.core.fhir.dates import parse_date_range
from fhirgate.core.fhir.extract import date_range


def _reference(value: str) -> tuple[float, float] | None:
    try:
        return parse_date_range(value)
    except (ValueError, OverflowError):
        return None


@st.composite
def fhir_dates(draw: st.DrawFn) -> str:
    year = draw(st.integers(1, 9998))
    month = draw(st.integers(0, 13))
    day = draw(st.integers(0, 32))
    text = f"{year:04d}-{month:02d}-{day:02d}"
    if draw(st.booleans()):
        h, m, s = draw(st.integers(0, 24)), draw(st.integers(0, 60)), draw(st.integers(0, 60))
        text += f"T{h:02d}:{m:02d}:{s:02d}"
        if draw(st.booleans()):
            text += "." + "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=1, max_size=9)))
        text += draw(st.sampled_from(["", "Z", "+00:00", "-04:00", "+05:30", "+14:00", "-12:45"]))
    return text


@settings(max_examples=600, deadline=None)
@given(fhir_dates())
def test_fast_path_matches_reference(value: str) -> None:
    assert date_range(value) == _reference(value)


@pytest.mark.parametrize(
    "value",
    [
        "2020",
        "2020-02",
        "2020-02-29",
        "2019-02-29",
        "2020-13-01",
        "2020-01-01T10:00Z",
        "2020-01-01T10:00:00",
        "2020-01-01T10:00:00.123+01:00",
        "2020-01-01T10:00:00.9999999Z",
        "2020-01-01T24:00:00Z",
        "2020-01-01T10:00:00+5:00",
        "2020-01-01T10:00:00 ",
        " 2020-01-01",
        "2020-01-01T10:00:00.Z",
        "0000-01-01",
        "not a date",
        "",
    ],
)
def test_edge_cases_match_reference(value: str) -> None:
    assert date_range(value) == _reference(value)


@pytest.mark.parametrize("value", ["２０２０-01-01", "2020-01-01T1０:00:00Z", "2020-0١-01"])
def test_non_ascii_digits_are_not_dates(value: str) -> None:
    # Deliberately stricter than parse_date_range, whose \d also accepts non-ASCII digits:
    # FHIR's date regex is [0-9] (FHIR R4 §2.24.0.1).
    assert date_range(value) is None


def test_last_representable_day() -> None:
    # parse_date_range overflows computing the end of 9999-12-31; the fast path does not.
    low, high = date_range("9999-12-31")  # type: ignore[misc]
    assert low == 253402214400.0
    assert high > low
