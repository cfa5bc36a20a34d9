"""Translate a SearchQuery into parameterized SQL over the index tables (values are always bound, never inlined).

Each clause becomes `rid IN (SELECT rid FROM ix_<type> WHERE pid=? AND ...)`, so SQLite drives the
search from the most selective value index; semantics follow FHIR R4 §3.1.1.4 (prefixes on ranges,
implicit precision for numbers, string starts-with on normalized text).
"""

# ruff: noqa: S608 - SQL is assembled only from fixed fragments and table names; every value is bound.

from __future__ import annotations

import time
from collections.abc import Callable
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

PidLookup = Callable[[str, str], int]
_TOP = "\U0010ffff"  # sorts after every other character: `x >= p AND x < p || _TOP` is a prefix match
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
COLUMNS = "r.rid, r.type, r.id, r.version, r.lu, r.deleted, r.body"


def _prefix(text: str) -> list[Any]:
    return [text, text + _TOP]


def date_condition(value: DateValue, low: str, high: str, args: list[Any]) -> str:
    """Range comparison for one date value (FHIR R4 §3.1.1.4.5: the target is the range [low, high])."""
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
    slack = max(_DAY, 0.1 * abs(time.time() - ql))
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


def _value_condition(clause: Clause, value: Value, args: list[Any]) -> str:
    mod = clause.modifier
    if isinstance(value, TokenValue):
        parts: list[str] = []
        if value.code is not None:
            if mod == "below":
                parts.append("code >= ? AND code < ?")
                args += _prefix(value.code)
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
        args += _prefix(value.norm)
        return "(norm >= ? AND norm < ?)"
    if isinstance(value, TextValue):
        # Starts-with on the text or on any word of it (FHIR R4 §3.1.1.5.7 :text is a string search).
        args += [*_prefix(value.norm), " " + value.norm]
        return "((text >= ? AND text < ?) OR instr(text, ?) > 0)"
    if isinstance(value, DateValue):
        return date_condition(value, "low", "high", args)
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
            args += _prefix(value.uri)
            return "(uri >= ? AND uri < ?)"
        args.append(value.uri)
        return "uri = ?"
    raise InvalidInput(clause.code, "value type not supported by this store")


def _membership(alias: str, key: str, tables: str, cond: str, *, negate: bool = False, correlated: bool = False) -> str:
    """`alias.rid [NOT] IN (SELECT key FROM tables WHERE cond)`, or the correlated [NOT] EXISTS form."""
    if correlated:
        return f"{'NOT ' if negate else ''}EXISTS (SELECT 1 FROM {tables} WHERE {key} = {alias}.rid AND {cond})"
    return f"{alias}.rid {'NOT IN' if negate else 'IN'} (SELECT {key} FROM {tables} WHERE {cond})"


class SqlBuilder:
    """Builds the WHERE clause, ORDER BY and count queries for one SearchQuery."""

    def __init__(self, pid_of: PidLookup) -> None:
        self._pid_of = pid_of

    def clause(self, rtype: str, clause: Clause, alias: str, args: list[Any], *, correlated: bool = False) -> str:
        """SQL condition for one clause on resource alias `alias` of type `rtype`.

        Uncorrelated (`rid IN (SELECT rid FROM ix_… WHERE …)`) lets SQLite drive a practice-wide search from the
        value index; correlated (`EXISTS (… WHERE rid = r.rid …)`) probes the index per row, which is far cheaper
        when a patient compartment already narrows the rows to a few hundred.
        """
        if clause.code == "_id":
            ids = [v.code for v in clause.values if isinstance(v, TokenValue)]
            args += ids
            return f"{alias}.id IN ({','.join('?' * len(ids))})"
        if clause.code == "_lastUpdated":
            conds = [
                date_condition(v, f"{alias}.lue", f"{alias}.lue", args)
                for v in clause.values
                if isinstance(v, DateValue)
            ]
            return "(" + " OR ".join(conds) + ")"
        pid = self._pid_of(rtype, clause.code)
        if clause.chained is not None and clause.chain_type is not None:
            args += [pid, clause.chain_type]
            inner = self.clause(clause.chain_type, clause.chained, "t", args)
            return _membership(
                alias,
                "x.rid",
                "ix_reference x JOIN resources t ON t.type = x.ttype AND t.id = x.tid",
                f"x.pid = ? AND x.ttype = ? AND t.deleted = 0 AND {inner}",
                correlated=correlated,
            )
        table = _TABLE[clause.type]
        first = clause.values[0]
        if isinstance(first, MissingValue):
            args.append(pid)
            return _membership(alias, "rid", table, "pid = ?", negate=first.missing, correlated=correlated)
        if clause.modifier == "text":
            table = "ix_token_text"
        args.append(pid)
        conds = [_value_condition(clause, v, args) for v in clause.values]
        return _membership(
            alias, "rid", table, f"pid = ? AND ({' OR '.join(conds)})", negate=clause.modifier == "not",
            correlated=correlated,
        )  # fmt: skip

    def source(self, compartment: str | None, args: list[Any]) -> str:
        """The FROM clause: all resources, or - with a compartment - only that patient's, driving the join."""
        if compartment is None:
            return "resources r"
        args += [compartment, compartment]
        # CROSS JOIN fixes the join order in SQLite: the compartment rows first, then each resource by rowid.
        return (
            "(SELECT rid FROM compartment WHERE patient = ?"
            " UNION SELECT rid FROM resources WHERE type = 'Patient' AND id = ?) AS c"
            " CROSS JOIN resources r ON r.rid = c.rid"
        )

    def compartment(self, alias: str, patient: str, args: list[Any]) -> str:
        """The resource is the patient itself or in its compartment (FHIR R4 §3.2.0 CompartmentDefinition)."""
        args += [patient, patient]
        return (
            f"({alias}.rid IN (SELECT rid FROM compartment WHERE patient = ?)"
            f" OR ({alias}.type = 'Patient' AND {alias}.id = ?))"
        )

    def where(self, query: SearchQuery, args: list[Any]) -> str:
        """The WHERE for the matches of `query` on alias r; pair it with `source`, which applies the compartment."""
        conds = ["r.type = ?", "r.deleted = 0"]
        args.append(query.resource_type)
        narrow = query.compartment is not None
        conds += [self.clause(query.resource_type, c, "r", args, correlated=narrow) for c in query.clauses]
        return " AND ".join(conds)

    def order_by(self, query: SearchQuery, args: list[Any]) -> str:
        """ORDER BY for `_sort`, with the rowid as final tiebreak so paging is stable."""
        terms = [self._sort_term(query.resource_type, key, args) for key in query.sort]
        terms.append("r.rid")
        return ", ".join(terms)

    def _sort_term(self, rtype: str, key: SortKey, args: list[Any]) -> str:
        direction = "DESC" if key.descending else "ASC"
        if key.type == "_id":
            return f"r.id {direction}"
        if key.type == "_lastUpdated":
            return f"r.lue {direction}"
        table, low, high = _SORT_COLUMN[key.type]
        agg = f"max({high})" if key.descending else f"min({low})"
        args.append(self._pid_of(rtype, key.code))
        return f"(SELECT {agg} FROM {table} WHERE rid = r.rid AND pid = ?) {direction} NULLS LAST"

    def select(self, query: SearchQuery, limit: int) -> tuple[str, list[Any]]:
        """The page query: matching rows in order, `limit` rows from query.offset."""
        args: list[Any] = []
        source = self.source(query.compartment, args)
        where = self.where(query, args)
        order = self.order_by(query, args)
        args += [limit, query.offset]
        return f"SELECT {COLUMNS} FROM {source} WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?", args

    def count(self, query: SearchQuery) -> tuple[str, list[Any]]:
        """The total-matches query."""
        args: list[Any] = []
        source = self.source(query.compartment, args)
        return f"SELECT count(*) FROM {source} WHERE {self.where(query, args)}", args
