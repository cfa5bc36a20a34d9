"""A parsed SearchQuery back into upstream URL parameters: only what fhirgate's parser accepted is sent.

The query was validated by core.fhir.search.parse_search (and narrowed by policy); this renders each clause
in FHIR R4 §3.1.1 syntax again (values escaped per §3.1.1.6, dates and numbers at the precision they were
given), so the upstream answers the same question the embedded store would. Paging, totals and the Patient
compartment are added by the store (fhirgate.store.remote.store), which knows the upstream's capabilities.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from decimal import Decimal

from fhirgate.core.fhir.definitions import compartment_params
from fhirgate.core.fhir.search import Clause, Include, SearchQuery
from fhirgate.core.fhir.search_values import (
    DateValue,
    MissingValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TextValue,
    TokenValue,
    UriValue,
    Value,
)

__all__ = ["Params", "clause_params", "compartment_param", "query_key", "search_params"]

Params = list[tuple[str, str]]

# Preferred compartment parameters, most specific first: one reference parameter is AND-ed to the search
# (FHIR R4 §3.2.0 compartments OR their parameters, which one search cannot express; see compartment_param).
_COMPARTMENT_PREFERENCE = ("patient", "subject", "beneficiary", "actor", "participant")
_ESCAPE_RE = re.compile(r"([\\,|$])")


def _esc(text: str) -> str:
    """Escape `\\ , | $` in a search value (FHIR R4 §3.1.1.6)."""
    return _ESCAPE_RE.sub(r"\\\1", text)


def _prefix(prefix: str) -> str:
    """A comparison prefix as sent: `eq` is the default and left out (FHIR R4 §3.1.1.4 prefixes)."""
    return "" if prefix == "eq" else prefix


def _instant(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _date_text(value: DateValue) -> str:
    """The date at the precision its [low, high] range denotes (year, month, day, minute, second, fraction)."""
    low = _instant(value.low)
    end = value.high + 1e-6  # the parser's high bound is inclusive by one microsecond
    span = end - value.low
    midnight = (low.hour, low.minute, low.second, low.microsecond) == (0, 0, 0, 0)
    if midnight and low.day == 1 and low.month == 1 and abs(end - low.replace(year=low.year + 1).timestamp()) < 1e-3:
        return f"{low.year:04d}"
    if midnight and low.day == 1:
        nxt = low.replace(year=low.year + 1, month=1) if low.month == 12 else low.replace(month=low.month + 1)
        if abs(end - nxt.timestamp()) < 1e-3:
            return f"{low.year:04d}-{low.month:02d}"
    if midnight and abs(span - 86400) < 1e-3:
        return low.strftime("%Y-%m-%d")
    if low.second == 0 and low.microsecond == 0 and abs(span - 60) < 1e-3:
        return low.strftime("%Y-%m-%dT%H:%MZ")
    if low.microsecond == 0 and abs(span - 1) < 1e-3:
        return low.strftime("%Y-%m-%dT%H:%M:%SZ")
    digits = max(1, min(6, round(-math.log10(max(span, 1e-6)))))
    return low.strftime("%Y-%m-%dT%H:%M:%S") + f".{low.microsecond:06d}"[: digits + 1] + "Z"


def _number_text(value: float, low: float, high: float) -> str:
    """The number at its implicit precision (FHIR R4 §3.1.1.4.2): `100` for [99.5, 100.5), `1E+3` for 1e3."""
    width = high - low
    exponent = round(math.log10(width)) if width > 0 else 0
    number = Decimal(repr(value)).quantize(Decimal(1).scaleb(exponent))
    return format(number, "f") if exponent <= 0 else str(number)


def _value_text(value: Value) -> str:
    """One value in URL syntax."""
    if isinstance(value, TokenValue):
        if value.any_system:
            return _esc(value.code or "")
        return f"{_esc(value.system or '')}|{_esc(value.code or '')}"
    if isinstance(value, StringValue):
        return _esc(value.raw)
    if isinstance(value, TextValue):
        return _esc(value.norm)
    if isinstance(value, DateValue):
        return f"{_prefix(value.prefix)}{_date_text(value)}"
    if isinstance(value, NumberValue):
        return f"{_prefix(value.prefix)}{_number_text(value.value, value.low, value.high)}"
    if isinstance(value, QuantityValue):
        number = f"{_prefix(value.prefix)}{_number_text(value.value, value.low, value.high)}"
        if value.system is None and value.code is None:
            return number
        return f"{number}|{_esc(value.system or '')}|{_esc(value.code or '')}"
    if isinstance(value, ReferenceValue):
        if value.url is not None:
            return _esc(value.url)
        return f"{value.type}/{value.id}" if value.type and value.id else _esc(value.id or "")
    if isinstance(value, UriValue):
        return _esc(value.uri)
    assert isinstance(value, MissingValue)
    return "true" if value.missing else "false"


def clause_params(clause: Clause) -> tuple[str, str]:
    """One AND-ed clause as `name[:modifier][.chained]=v1,v2` (values OR-ed, FHIR R4 §3.1.1.3)."""
    if clause.chained is not None:
        inner = clause.chained
        name = f"{clause.code}:{clause.chain_type}.{inner.code}" + (f":{inner.modifier}" if inner.modifier else "")
        return name, ",".join(_value_text(v) for v in inner.values)
    name = clause.code + (f":{clause.modifier}" if clause.modifier else "")
    return name, ",".join(_value_text(v) for v in clause.values)


def _include_text(include: Include) -> str:
    text = f"{include.source_type}:{include.param}"
    return text + (f":{include.target_type}" if include.target_type else "")


def compartment_param(resource_type: str) -> str | None:
    """The reference parameter that puts a resource of this type in a Patient compartment, or None.

    The CompartmentDefinition (FHIR R4 §3.2.0) ORs several parameters (an Observation is in the compartment
    by `subject` or `performer`); one search can AND only, so the most specific one is used. The remote store
    may therefore find fewer compartment members than the embedded store (never more: results are re-checked).
    """
    params = compartment_params(resource_type)
    for code in _COMPARTMENT_PREFERENCE:
        if code in params:
            return code
    return params[0] if params else None


def search_params(query: SearchQuery) -> Params:
    """The query's clauses, sort and includes as upstream parameters (no paging, totals or compartment).

    `_elements` and `_summary` are not sent: fhirgate needs whole resources to apply policy (labels, consent,
    compartments) and shapes what the caller sees itself.
    """
    params: Params = [clause_params(c) for c in query.clauses]
    if query.sort:
        params.append(("_sort", ",".join(("-" if k.descending else "") + k.code for k in query.sort)))
    params += [("_include", _include_text(i)) for i in query.includes]
    params += [("_revinclude", _include_text(i)) for i in query.revincludes]
    return params


def query_key(resource_type: str, params: Params) -> str:
    """A stable key of one upstream question (type and parameters in order), for the next-link cache."""
    return resource_type + "?" + "&".join(f"{k}={v}" for k, v in params)
