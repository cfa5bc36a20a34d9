"""Search-index extraction: every index row of one resource, from compiled search expressions.

Values become rows by parameter type as FHIR R4 §3.1.1.4 describes: token from Coding /
CodeableConcept / Identifier / ContactPoint / code / boolean, string from string / HumanName / Address,
date from date / dateTime / instant / Period / Timing, reference from Reference and canonical,
quantity from Quantity / Money / Range / SampledData.origin, number, uri. Extractors are compiled once
per (type, param) and dispatched on the resource's top-level keys, so absent elements cost nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, lru_cache
from typing import Any

from fhirgate.core.fhir.compartment import compartment_ids
from fhirgate.core.fhir.dates import parse_date_range
from fhirgate.core.fhir.definitions import (
    STORE_NATIVE_PARAMS,
    choice_elements,
    compartment_params,
    is_supported,
    search_params,
)
from fhirgate.core.fhir.indexing import IndexRows
from fhirgate.core.fhir.normalize import normalize_text
from fhirgate.core.fhir.pathexpr import Evaluator, compile_terms, split_reference
from fhirgate.errors import InvalidInput, ValidationFailed

# Open ends of a Period (FHIR R4 datatypes, Period: a missing start or end is unbounded).
OPEN_LOW = -1e18
OPEN_HIGH = 1e18
_ISO4217 = "urn:iso:std:iso:4217"  # Money.currency as a Quantity system (FHIR R4 §3.1.1.4, quantity)
# HumanName and Address parts that string search matches (FHIR R4 §3.1.1.4, string).
_STRING_PARTS = frozenset(
    {"text", "family", "given", "prefix", "suffix", "line", "city", "district", "state", "postalCode", "country"}
)

_EPS = 1e-6  # the high bound is inclusive, one microsecond below the next instant (as core.fhir.dates)
_MONTH_DAYS = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@lru_cache(maxsize=16384)
def _day_epoch(day: str) -> int | None:
    """Epoch seconds of a YYYY-MM-DD day at 00:00 UTC, or None when it is no calendar day."""
    if not (day[:4].isdigit() and day[5:7].isdigit() and day[8:10].isdigit()):
        return None
    y, m, d = int(day[:4]), int(day[5:7]), int(day[8:10])
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    if y < 1 or not 1 <= m <= 12 or not 1 <= d <= (29 if m == 2 and leap else _MONTH_DAYS[m]):
        return None
    # days from civil (H. Hinnant's algorithm), proleptic Gregorian like datetime
    yy = y - (m <= 2)
    era = yy // 400
    yoe = yy - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return (era * 146097 + doe - 719468) * 86400


def _slow_date_range(value: str) -> tuple[float, float] | None:
    try:
        return parse_date_range(value)
    except (ValueError, OverflowError):
        return None


@lru_cache(maxsize=65536)  # dates repeat: an encounter's resources share its timestamps
def date_range(value: str) -> tuple[float, float] | None:
    """parse_date_range's [low, high] for a FHIR date/dateTime/instant, fast for the common forms.

    Full dates and second-precision dateTimes (with optional fraction and zone) are computed without
    datetime; other forms defer to core.fhir.dates. None when the value is not a FHIR date.
    """
    if not value.isascii():
        return None  # FHIR dates are [0-9] only (FHIR R4 §2.24.0.1)
    n = len(value)
    if n < 10 or value[4] != "-" or value[7] != "-":
        return _slow_date_range(value)
    day = _day_epoch(value[:10])
    if day is None:
        return None
    if n == 10:
        return float(day), float(day + 86400) - _EPS
    if n < 19 or value[10] != "T" or value[13] != ":" or value[16] != ":":
        return _slow_date_range(value)
    hh, mm, ss = value[11:13], value[14:16], value[17:19]
    if not (hh.isdigit() and mm.isdigit() and ss.isdigit()):
        return None
    h, mi, s = int(hh), int(mm), int(ss)
    if h > 23 or mi > 59 or s > 59:
        return None
    rest = value[19:]
    micro = step = 0
    if rest[:1] == ".":
        i = 1
        while i < len(rest) and rest[i].isdigit():
            i += 1
        if i == 1:
            return None
        frac, rest = rest[:i], rest[i:]
        micro = min(round(float(frac) * 1_000_000), 999_999)
        step = max(1, 10 ** max(0, 6 - (i - 1)))
    offset = 0
    if rest == "Z" or not rest:
        pass
    elif len(rest) == 6 and rest[0] in "+-" and rest[3] == ":" and rest[1:3].isdigit() and rest[4:].isdigit():
        offset = (int(rest[1:3]) * 3600 + int(rest[4:6]) * 60) * (1 if rest[0] == "+" else -1)
    else:
        return _slow_date_range(value)
    start = day + h * 3600 + mi * 60 + s - offset
    if not step:
        return float(start), float(start + 1) - _EPS
    start_us = start * 1_000_000 + micro
    return start_us / 1_000_000, (start_us + step) / 1_000_000 - _EPS


Converter = Callable[[str, list[Any], IndexRows], None]


def _coding(param: str, coding: Any, rows: IndexRows) -> None:
    if type(coding) is not dict:
        return
    code = coding.get("code")
    if type(code) is str:
        rows.token.append((param, coding.get("system"), code))
    display = coding.get("display")
    if type(display) is str:
        rows.token_text.append((param, normalize_text(display)))


def _token(param: str, values: list[Any], rows: IndexRows) -> None:
    for v in values:
        kind = type(v)
        if kind is str:
            rows.token.append((param, None, v))
        elif kind is dict:
            if "coding" in v or ("text" in v and "value" not in v and "code" not in v):  # CodeableConcept
                codings = v.get("coding")
                if type(codings) is list:
                    for coding in codings:
                        _coding(param, coding, rows)
                text = v.get("text")
                if type(text) is str:
                    rows.token_text.append((param, normalize_text(text)))
            elif "code" in v or "display" in v:  # Coding
                _coding(param, v, rows)
            else:  # Identifier / ContactPoint: system|value
                value = v.get("value")
                if type(value) is str:
                    rows.token.append((param, v.get("system"), value))
        elif kind is bool:
            rows.token.append((param, None, "true" if v else "false"))
        elif kind is int or kind is float:
            rows.token.append((param, None, str(v)))


def _string(param: str, values: list[Any], rows: IndexRows) -> None:
    out = rows.string
    for v in values:
        if type(v) is str:
            out.append((param, normalize_text(v), v))
        elif type(v) is dict:  # HumanName / Address
            for key, part in v.items():
                if key not in _STRING_PARTS:
                    continue
                if type(part) is str:
                    out.append((param, normalize_text(part), part))
                elif type(part) is list:
                    out.extend((param, normalize_text(p), p) for p in part if type(p) is str)


def _period(param: str, start: Any, end: Any, rows: IndexRows) -> None:
    low = date_range(start) if type(start) is str else None
    high = date_range(end) if type(end) is str else None
    if (start is not None and low is None) or (end is not None and high is None):
        return  # an unparsable bound: no row rather than a wrong one
    if low is None and high is None:
        return
    rows.date.append((param, low[0] if low else OPEN_LOW, high[1] if high else OPEN_HIGH))


def _date(param: str, values: list[Any], rows: IndexRows) -> None:
    for v in values:
        if type(v) is str:
            rng = date_range(v)
            if rng is not None:
                rows.date.append((param, rng[0], rng[1]))
        elif type(v) is dict:
            if "start" in v or "end" in v:  # Period
                _period(param, v.get("start"), v.get("end"), rows)
            elif "event" in v or "repeat" in v:  # Timing: events, and repeat.boundsPeriod
                events = v.get("event")
                if type(events) is list:
                    _date(param, events, rows)
                repeat = v.get("repeat")
                bounds = repeat.get("boundsPeriod") if type(repeat) is dict else None
                if type(bounds) is dict:
                    _period(param, bounds.get("start"), bounds.get("end"), rows)


def _reference(param: str, values: list[Any], rows: IndexRows) -> None:
    for v in values:
        if type(v) is dict:
            ref = v.get("reference")
            if type(ref) is str and ref:
                rtype, rid = split_reference(ref)
                rows.reference.append((param, rtype, rid, ref))
        elif type(v) is str and ("://" in v or v.startswith("urn:")):  # canonical: absolute url|version
            rtype, rid = split_reference(v.partition("|")[0])
            rows.reference.append((param, rtype, rid, v))


def _quantity(param: str, values: list[Any], rows: IndexRows) -> None:
    for v in values:
        if type(v) is not dict:
            continue
        value = v.get("value")
        if value is not None:
            if type(value) is int or type(value) is float:
                if "currency" in v:  # Money
                    rows.quantity.append((param, float(value), _ISO4217, v.get("currency")))
                else:
                    rows.quantity.append((param, float(value), v.get("system"), v.get("code") or v.get("unit")))
        elif "low" in v or "high" in v:  # Range: both bounds
            _quantity(param, [v.get("low"), v.get("high")], rows)
        elif "origin" in v:  # SampledData
            _quantity(param, [v["origin"]], rows)


def _number(param: str, values: list[Any], rows: IndexRows) -> None:
    for v in values:
        if type(v) is int or type(v) is float:
            rows.number.append((param, float(v)))


def _uri(param: str, values: list[Any], rows: IndexRows) -> None:
    for v in values:
        if type(v) is str and v:
            rows.uri.append((param, v))


CONVERTERS: dict[str, Converter] = {
    "token": _token,
    "string": _string,
    "date": _date,
    "reference": _reference,
    "quantity": _quantity,
    "number": _number,
    "uri": _uri,
}

# One compiled term and the (param, converter) pairs fed by it: params sharing an expression
# (Observation `code` and `combo-code`, `subject` and `patient`) evaluate it once.
_Group = tuple[Evaluator, tuple[tuple[str, Converter], ...]]


@cache
def _plan(resource_type: str) -> tuple[dict[str, tuple[_Group, ...]], tuple[_Group, ...], frozenset[str]]:
    """(term groups by top-level JSON key, groups that always run, compartment params) for one type."""
    choices = choice_elements(resource_type)
    terms: dict[str, tuple[Evaluator, frozenset[str] | None, list[tuple[str, Converter]]]] = {}
    for code, param in search_params(resource_type).items():
        convert = CONVERTERS.get(param.type)
        if convert is None or code in STORE_NATIVE_PARAMS:
            continue  # `special` (Location.near) has no row shape; _id/_lastUpdated are store columns
        for term in compile_terms(param.expression, resource_type, choices):
            if term.expression not in terms:
                terms[term.expression] = (term.evaluate, term.keys, [])
            terms[term.expression][2].append((code, convert))
    by_key: dict[str, list[_Group]] = {}
    always: list[_Group] = []
    for evaluate, keys, targets in terms.values():
        group = (evaluate, tuple(targets))
        if keys is None:
            always.append(group)
        for key in keys or ():
            by_key.setdefault(key, []).append(group)
    frozen = {k: tuple(v) for k, v in by_key.items()}
    return frozen, tuple(always), frozenset(compartment_params(resource_type))


def _dedupe(rows: IndexRows) -> None:
    """Drop repeated rows, keeping first-seen order (FHIRPath unions and repeated codings repeat)."""
    if len(rows.token) > 1:
        rows.token = list(dict.fromkeys(rows.token))
    if len(rows.token_text) > 1:
        rows.token_text = list(dict.fromkeys(rows.token_text))
    if len(rows.string) > 1:
        rows.string = list(dict.fromkeys(rows.string))
    if len(rows.date) > 1:
        rows.date = list(dict.fromkeys(rows.date))
    if len(rows.reference) > 1:
        rows.reference = list(dict.fromkeys(rows.reference))
    if len(rows.quantity) > 1:
        rows.quantity = list(dict.fromkeys(rows.quantity))
    if len(rows.number) > 1:
        rows.number = list(dict.fromkeys(rows.number))
    if len(rows.uri) > 1:
        rows.uri = list(dict.fromkeys(rows.uri))


def extract(resource: dict[str, Any]) -> IndexRows:
    """Every search-index row of a resource, plus the Patients whose compartment holds it.

    Raises InvalidInput for a missing or unsupported resourceType, ValidationFailed when an element
    has a shape the extractor cannot walk.
    """
    rtype = resource.get("resourceType") if type(resource) is dict else None
    if type(rtype) is not str or not is_supported(rtype):
        raise InvalidInput("resourceType", "missing or unsupported resource type")
    by_key, always, compartment = _plan(rtype)
    rows = IndexRows()
    code = rtype
    try:
        for key in resource:
            groups = by_key.get(key)
            if groups is not None:
                for evaluate, targets in groups:
                    values = evaluate(resource)
                    if values:
                        for code, convert in targets:
                            convert(code, values, rows)
        for evaluate, targets in always:
            values = evaluate(resource)
            for code, convert in targets:
                convert(code, values, rows)
    except (TypeError, AttributeError, ValueError) as exc:
        raise ValidationFailed(f"unexpected element shape ({type(exc).__name__})", location=f"{rtype}:{code}") from None
    _dedupe(rows)
    refs = (raw for param, target, _id, raw in rows.reference if target == "Patient" and param in compartment)
    rows.patients = compartment_ids(rtype, resource.get("id"), refs)
    return rows
