"""SQL conditions for one search value over the index tables, shared by the SQL backends (SQLite, PostgreSQL).

Semantics follow FHIR R4 §3.1.1.4 (prefixes on ranges, implicit precision for numbers, string starts-with
on normalized text). Fragments are written once with `?` placeholders and `instr`; a `Dialect` renders them
for its driver (PostgreSQL: `%s` and `strpos`). Values are always bound, never inlined.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from fhirgate.core.fhir.normalize import normalize_text
from fhirgate.core.fhir.search import (
    Clause,
    DateValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TextValue,
    TokenValue,
    UriValue,
    Value,
)
from fhirgate.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class Dialect:
    """How a backend spells a bound parameter and "position of a substring" (both take (haystack, needle))."""

    param: str
    position: str

    def render(self, fragment: str) -> str:
        """A fragment written with `?` and `instr(` in this dialect (fragments hold only column names)."""
        if self.param == "?" and self.position == "instr":
            return fragment
        return fragment.replace("instr(", self.position + "(").replace("?", self.param)


SQLITE = Dialect("?", "instr")
POSTGRES = Dialect("%s", "strpos")

TOP = "\U0010ffff"  # sorts after every other character: `x >= p AND x < p || TOP` is a prefix match
DAY = 86400.0

INDEX_TABLES = {
    "token": "ix_token",
    "string": "ix_string",
    "date": "ix_date",
    "reference": "ix_reference",
    "quantity": "ix_quantity",
    "number": "ix_number",
    "uri": "ix_uri",
}
SORT_COLUMNS = {
    "date": ("ix_date", "low", "high"),
    "string": ("ix_string", "norm", "norm"),
    "token": ("ix_token", "code", "code"),
    "number": ("ix_number", "value", "value"),
    "quantity": ("ix_quantity", "value", "value"),
}


def prefix_range(text: str) -> list[Any]:
    """Bounds of a starts-with match: `x >= p AND x < p || TOP`."""
    return [text, text + TOP]


def date_condition(value: DateValue, low: str, high: str, args: list[Any], dialect: Dialect = SQLITE) -> str:
    """Range comparison for one date value (FHIR R4 §3.1.1.4.5: the target is the range [low, high])."""
    return dialect.render(_date_condition(value, low, high, args))


def _date_condition(value: DateValue, low: str, high: str, args: list[Any]) -> str:
    ql, qh, p = value.low, value.high, value.prefix
    contained = f"({low} >= ? AND {high} <= ?)"
    if p == "eq":
        args += [ql, qh]
        return contained
    if p == "ne":
        args += [ql, qh]
        return f"NOT {contained}"
    if p == "gt":
        args.append(qh)
        return f"{high} > ?"
    if p == "lt":
        args.append(ql)
        return f"{low} < ?"
    if p == "ge":
        args += [qh, ql, qh]
        return f"({high} > ? OR {contained})"
    if p == "le":
        args += [ql, ql, qh]
        return f"({low} < ? OR {contained})"
    if p == "sa":
        args.append(qh)
        return f"{low} > ?"
    if p == "eb":
        args.append(ql)
        return f"{high} < ?"
    # ap: overlap, widened by 10% of the distance from now (FHIR R4 §3.1.1.4 "ap"), at least a day.
    slack = max(DAY, 0.1 * abs(time.time() - ql))
    args += [qh + slack, ql - slack]
    return f"({low} <= ? AND {high} >= ?)"


def _number_condition(prefix: str, value: float, lo: float, hi: float, col: str, args: list[Any]) -> str:
    # Numbers and quantities are points; eq/ne use the implicit precision range (FHIR R4 §3.1.1.4.2).
    if prefix in ("eq", "ne"):
        args += [lo, hi]
        cond = f"({col} >= ? AND {col} < ?)"
        return cond if prefix == "eq" else f"NOT {cond}"
    if prefix == "ap":
        slack = max(abs(value) * 0.1, hi - lo)
        args += [value - slack, value + slack]
        return f"({col} BETWEEN ? AND ?)"
    op = {"gt": ">", "sa": ">", "lt": "<", "eb": "<", "ge": ">=", "le": "<="}[prefix]
    args.append(value)
    return f"{col} {op} ?"


def value_condition(clause: Clause, value: Value, args: list[Any], dialect: Dialect = SQLITE) -> str:
    """The condition one value of a clause puts on its index table's columns."""
    return dialect.render(_value_condition(clause, value, args))


def _value_condition(clause: Clause, value: Value, args: list[Any]) -> str:
    mod = clause.modifier
    if isinstance(value, TokenValue):
        parts: list[str] = []
        if value.code is not None:
            if mod == "below":
                parts.append("code >= ? AND code < ?")
                args += prefix_range(value.code)
            else:
                parts.append("code = ?")
                args.append(value.code)
        if not value.any_system:
            parts.append("system = ?")
            args.append(value.system or "")
        return "(" + " AND ".join(parts) + ")"
    if isinstance(value, StringValue):
        if mod == "exact":
            args += [normalize_text(value.raw), value.raw]
            return "(norm = ? AND exact = ?)"
        if mod == "contains":
            args.append(value.norm)
            return "instr(norm, ?) > 0"
        args += prefix_range(value.norm)
        return "(norm >= ? AND norm < ?)"
    if isinstance(value, TextValue):
        # Starts-with on the text or on any word of it (FHIR R4 §3.1.1.5.7 :text is a string search).
        args += [*prefix_range(value.norm), " " + value.norm]
        return "((text >= ? AND text < ?) OR instr(text, ?) > 0)"
    if isinstance(value, DateValue):
        return _date_condition(value, "low", "high", args)
    if isinstance(value, QuantityValue):
        cond = _number_condition(value.prefix, value.value, value.low, value.high, "value", args)
        if value.system is not None:
            cond += " AND system = ?"
            args.append(value.system)
        if value.code is not None:
            cond += " AND code = ?"
            args.append(value.code)
        return f"({cond})"
    if isinstance(value, NumberValue):
        return _number_condition(value.prefix, value.value, value.low, value.high, "value", args)
    if isinstance(value, ReferenceValue):
        if value.url is not None:
            cond = "raw = ?"
            args.append(value.url)
        else:
            cond = "tid = ?"
            args.append(value.id)
        if value.type is not None:
            cond += " AND ttype = ?"
            args.append(value.type)
        return f"({cond})"
    if isinstance(value, UriValue):
        if mod == "below":
            args += prefix_range(value.uri)
            return "(uri >= ? AND uri < ?)"
        args.append(value.uri)
        return "uri = ?"
    raise InvalidInput(clause.code, "value type not supported by this store")
