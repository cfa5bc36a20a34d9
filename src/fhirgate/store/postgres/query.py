"""Translate a SearchQuery into parameterized PostgreSQL over the index tables (values always bound).

The value conditions are store/conditions.py's (shared with SQLite, FHIR R4 §3.1.1.4: prefixes on ranges, implicit
precision for numbers, string starts-with on normalized text), so both backends return the same matches
in the same order. Parameters are named by text (`Type.code`) instead of numeric ids.
"""

# ruff: noqa: S608 - SQL is assembled only from fixed fragments and table names; every value is bound.

from __future__ import annotations

from typing import Any

from fhirgate.core.fhir.search import (
    Clause,
    DateValue,
    MissingValue,
    SearchQuery,
    SortKey,
    TokenValue,
)
from fhirgate.store.conditions import INDEX_TABLES, POSTGRES, SORT_COLUMNS, date_condition, value_condition

COLUMNS = "r.rid, r.type, r.id, r.version, r.deleted, r.body::text"


def param_key(rtype: str, code: str) -> str:
    """The text naming a search parameter in the index tables."""
    return f"{rtype}.{code}"


def _membership(alias: str, key: str, tables: str, cond: str, *, negate: bool = False) -> str:
    return f"{alias}.rid {'NOT IN' if negate else 'IN'} (SELECT {key} FROM {tables} WHERE {cond})"


def clause_sql(rtype: str, clause: Clause, alias: str, args: list[Any]) -> str:
    """SQL condition for one clause on resource alias `alias` of type `rtype`."""
    if clause.code == "_id":
        args.append([v.code for v in clause.values if isinstance(v, TokenValue)])
        return f"{alias}.id = ANY(%s::text[])"
    if clause.code == "_lastUpdated":
        conds = [
            date_condition(v, f"{alias}.lue", f"{alias}.lue", args, POSTGRES)
            for v in clause.values
            if isinstance(v, DateValue)
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
    table = INDEX_TABLES[clause.type]
    first = clause.values[0]
    if isinstance(first, MissingValue):
        args.append(param)
        return _membership(alias, "rid", table, "param = %s", negate=first.missing)
    if clause.modifier == "text":
        table = "ix_token_text"
    args.append(param)
    conds = [value_condition(clause, v, args, POSTGRES) for v in clause.values]
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
    table, low, high = SORT_COLUMNS[key.type]
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
