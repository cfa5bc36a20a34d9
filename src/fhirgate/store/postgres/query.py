"""Translate a SearchQuery into parameterized PostgreSQL over the index tables (values always bound).

A mirror of store/sqlite/query.py with the same semantics (FHIR R4 §3.1.1.4: prefixes on ranges, implicit
precision for numbers, string starts-with on normalized text), so both backends return the same matches
in the same order. Parameters are named by text (`Type.code`) instead of numeric ids.
"""

# ruff: noqa: S608 - SQL is assembled only from fixed fragments and table names; every value is bound.

from __future__ import annotations

import time
from typing import Any

from fhirgate.core.fhir.normalize import normalize_text
from fhirgate.core.fhir.search import (
    Clause,
    DateValue,
    MissingValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    SearchQuery,
    SortKey,
    StringValue,
    TextValue,
    TokenValue,
    UriValue,
    Value,
)
from fhirgate.errors import InvalidInput

_TOP = "\U0010ffff"  # sorts after every other character in the "C" collation: a prefix range's upper bound
_DAY = 86400.0

_TABLE = {
    "token": "ix_token",
    "string": "ix_string",
    "date": "ix_date",
    "reference": "ix_reference",
    "quantity": "ix_quantity",
    "number": "ix_number",
    "uri": "ix_uri",
}
_SORT_COLUMN = {
    "date": ("ix_date", "low", "high"),
    "string": ("ix_string", "norm", "norm"),
    "token": ("ix_token", "code", "code"),
    "number": ("ix_number", "value", "value"),
    "quantity": ("ix_quantity", "value", "value"),
}
COLUMNS = "r.rid, r.type, r.id, r.version, r.deleted, r.body::text"


def param_key(rtype: str, code: str) -> str:
    """The text naming a search parameter in the index tables."""
    return f"{rtype}.{code}"


def _prefix(text: str) -> list[Any]:
    return [text, text + _TOP]


def date_condition(value: DateValue, low: str, high: str, args: list[Any]) -> str:
    """Range comparison for one date value (FHIR R4 §3.1.1.4.5: the target is the range [low, high])."""
    ql, qh, p = value.low, value.high, value.prefix
    contained = f"({low} >= %s AND {high} <= %s)"
    if p == "eq":
        args += [ql, qh]
        return contained
    if p == "ne":
        args += [ql, qh]
        return f"NOT {contained}"
    if p == "gt":
        args.append(qh)
        return f"{high} > %s"
    if p == "lt":
        args.append(ql)
        return f"{low} < %s"
    if p == "ge":
        args += [qh, ql, qh]
        return f"({high} > %s OR {contained})"
    if p == "le":
        args += [ql, ql, qh]
        return f"({low} < %s OR {contained})"
    if p == "sa":
        args.append(qh)
        return f"{low} > %s"
    if p == "eb":
        args.append(ql)
        return f"{high} < %s"
    slack = max(_DAY, 0.1 * abs(time.time() - ql))
    args += [qh + slack, ql - slack]
    return f"({low} <= %s AND {high} >= %s)"


def _number_condition(prefix: str, value: float, lo: float, hi: float, col: str, args: list[Any]) -> str:
    if prefix in ("eq", "ne"):
        args += [lo, hi]
        cond = f"({col} >= %s AND {col} < %s)"
        return cond if prefix == "eq" else f"NOT {cond}"
    if prefix == "ap":
        slack = max(abs(value) * 0.1, hi - lo)
        args += [value - slack, value + slack]
        return f"({col} BETWEEN %s AND %s)"
    op = {"gt": ">", "sa": ">", "lt": "<", "eb": "<", "ge": ">=", "le": "<="}[prefix]
    args.append(value)
    return f"{col} {op} %s"


def _value_condition(clause: Clause, value: Value, args: list[Any]) -> str:
    mod = clause.modifier
    if isinstance(value, TokenValue):
        parts: list[str] = []
        if value.code is not None:
            if mod == "below":
                parts.append("code >= %s AND code < %s")
                args += _prefix(value.code)
            else:
                parts.append("code = %s")
                args.append(value.code)
        if not value.any_system:
            parts.append("system = %s")
            args.append(value.system or "")
        return "(" + " AND ".join(parts) + ")"
    if isinstance(value, StringValue):
        if mod == "exact":
            args += [normalize_text(value.raw), value.raw]
            return "(norm = %s AND exact = %s)"
        if mod == "contains":
            args.append(value.norm)
            return "strpos(norm, %s) > 0"
        args += _prefix(value.norm)
        return "(norm >= %s AND norm < %s)"
    if isinstance(value, TextValue):
        args += [*_prefix(value.norm), " " + value.norm]
        return "((text >= %s AND text < %s) OR strpos(text, %s) > 0)"
    if isinstance(value, DateValue):
        return date_condition(value, "low", "high", args)
    if isinstance(value, QuantityValue):
        cond = _number_condition(value.prefix, value.value, value.low, value.high, "value", args)
        if value.system is not None:
            cond += " AND system = %s"
            args.append(value.system)
        if value.code is not None:
            cond += " AND code = %s"
            args.append(value.code)
        return f"({cond})"
    if isinstance(value, NumberValue):
        return _number_condition(value.prefix, value.value, value.low, value.high, "value", args)
    if isinstance(value, ReferenceValue):
        if value.url is not None:
            cond = "raw = %s"
            args.append(value.url)
        else:
            cond = "tid = %s"
            args.append(value.id)
        if value.type is not None:
            cond += " AND ttype = %s"
            args.append(value.type)
        return f"({cond})"
    if isinstance(value, UriValue):
        if mod == "below":
            args += _prefix(value.uri)
            return "(uri >= %s AND uri < %s)"
        args.append(value.uri)
        return "uri = %s"
    raise InvalidInput(clause.code, "value type not supported by this store")


def _membership(alias: str, key: str, tables: str, cond: str, *, negate: bool = False) -> str:
    return f"{alias}.rid {'NOT IN' if negate else 'IN'} (SELECT {key} FROM {tables} WHERE {cond})"


def clause_sql(rtype: str, clause: Clause, alias: str, args: list[Any]) -> str:
    """SQL condition for one clause on resource alias `alias` of type `rtype`."""
    if clause.code == "_id":
        args.append([v.code for v in clause.values if isinstance(v, TokenValue)])
        return f"{alias}.id = ANY(%s::text[])"
    if clause.code == "_lastUpdated":
        conds = [
            date_condition(v, f"{alias}.lue", f"{alias}.lue", args) for v in clause.values if isinstance(v, DateValue)
        ]
        return "(" + " OR ".join(conds) + ")"
    param = param_key(rtype, clause.code)
    if clause.chained is not None and clause.chain_type is not None:
        args += [param, clause.chain_type]
        inner = clause_sql(clause.chain_type, clause.chained, "t", args)
        return _membership(
            alias,
            "x.rid",
            "ix_reference x JOIN resources t ON t.type = x.ttype AND t.id = x.tid",
            f"x.param = %s AND x.ttype = %s AND NOT t.deleted AND {inner}",
        )
    table = _TABLE[clause.type]
    first = clause.values[0]
    if isinstance(first, MissingValue):
        args.append(param)
        return _membership(alias, "rid", table, "param = %s", negate=first.missing)
    if clause.modifier == "text":
        table = "ix_token_text"
    args.append(param)
    conds = [_value_condition(clause, v, args) for v in clause.values]
    return _membership(alias, "rid", table, f"param = %s AND ({' OR '.join(conds)})", negate=clause.modifier == "not")


def source(compartment: str | None, args: list[Any]) -> str:
    """The FROM clause: all resources, or - with a compartment - only that patient's."""
    if compartment is None:
        return "resources r"
    args += [compartment, compartment]
    return (
        "(SELECT rid FROM compartment WHERE patient = %s"
        " UNION SELECT rid FROM resources WHERE type = 'Patient' AND id = %s) AS c"
        " JOIN resources r ON r.rid = c.rid"
    )


def in_compartment(alias: str, patient: str, args: list[Any]) -> str:
    """The resource is the patient itself or in its compartment (FHIR R4 §3.2.0 CompartmentDefinition)."""
    args += [patient, patient]
    return (
        f"({alias}.rid IN (SELECT rid FROM compartment WHERE patient = %s)"
        f" OR ({alias}.type = 'Patient' AND {alias}.id = %s))"
    )


def where(query: SearchQuery, args: list[Any]) -> str:
    """The WHERE for the matches of `query` on alias r; pair it with `source`, which applies the compartment."""
    conds = ["r.type = %s", "NOT r.deleted"]
    args.append(query.resource_type)
    conds += [clause_sql(query.resource_type, c, "r", args) for c in query.clauses]
    return " AND ".join(conds)


def _sort_term(rtype: str, key: SortKey, args: list[Any]) -> str:
    direction = "DESC" if key.descending else "ASC"
    if key.type == "_id":
        return f"r.id {direction}"
    if key.type == "_lastUpdated":
        return f"r.lue {direction}"
    table, low, high = _SORT_COLUMN[key.type]
    agg = f"max({high})" if key.descending else f"min({low})"
    args.append(param_key(rtype, key.code))
    return f"(SELECT {agg} FROM {table} WHERE rid = r.rid AND param = %s) {direction} NULLS LAST"


def order_by(query: SearchQuery, args: list[Any]) -> str:
    """ORDER BY for `_sort`, with the rid (insertion order) as final tiebreak so paging is stable."""
    terms = [_sort_term(query.resource_type, key, args) for key in query.sort]
    terms.append("r.rid")
    return ", ".join(terms)


def select(query: SearchQuery, limit: int) -> tuple[str, list[Any]]:
    """The page query: matching rows in order, `limit` rows from query.offset."""
    args: list[Any] = []
    src = source(query.compartment, args)
    cond = where(query, args)
    order = order_by(query, args)
    args += [limit, query.offset]
    return f"SELECT {COLUMNS} FROM {src} WHERE {cond} ORDER BY {order} LIMIT %s OFFSET %s", args


def count(query: SearchQuery) -> tuple[str, list[Any]]:
    """The total-matches query."""
    args: list[Any] = []
    src = source(query.compartment, args)
    return f"SELECT count(*) FROM {src} WHERE {where(query, args)}", args
