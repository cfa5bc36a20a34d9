"""Translate a SearchQuery into parameterized SQL over the index tables (values are always bound, never inlined).

Each clause becomes `rid IN (SELECT rid FROM ix_<type> WHERE pid=? AND ...)`, so SQLite drives the
search from the most selective value index; semantics follow FHIR R4 §3.1.1.4 (prefixes on ranges,
implicit precision for numbers, string starts-with on normalized text).
"""

# ruff: noqa: S608 - SQL is assembled only from fixed fragments and table names; every value is bound.

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhirgate.core.fhir.search import (
    Clause,
    DateValue,
    MissingValue,
    SearchQuery,
    SortKey,
    TokenValue,
)
from fhirgate.store.conditions import INDEX_TABLES, SORT_COLUMNS, SQLITE, date_condition, value_condition

PidLookup = Callable[[str, str], int]
COLUMNS = "r.rid, r.type, r.id, r.version, r.lu, r.deleted, r.body"


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
                date_condition(v, f"{alias}.lue", f"{alias}.lue", args, SQLITE)
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
        table = INDEX_TABLES[clause.type]
        first = clause.values[0]
        if isinstance(first, MissingValue):
            args.append(pid)
            return _membership(alias, "rid", table, "pid = ?", negate=first.missing, correlated=correlated)
        if clause.modifier == "text":
            table = "ix_token_text"
        args.append(pid)
        conds = [value_condition(clause, v, args, SQLITE) for v in clause.values]
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
        table, low, high = SORT_COLUMNS[key.type]
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
