"""De-identified views: for a role with `deidentify = true`, every view column passes through Safe Harbor.

The sandbox's inner view for such a caller selects `fg_deid('<type>', "column")` instead of the column
(45 CFR 164.514(b)(2); core.policy.suppression.column_types decides each column's type from its FHIRPath):
ids become keyed pseudonyms stable for this principal, dates their year, birth dates their year or "90+",
postal codes their ZIP3 (000 for the restricted areas), names, street lines, cities, telecom and other free
text NULL; codes and numbers stay. Queries then only ever see de-identified values, whatever SQL they run,
and cannot call `fg_deid` themselves (authorizer). Computed integer cells of 1 to 10 in a result are
shown as "<11" (CMS small-cell suppression): counts of a de-identified population stay coarse.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fhirgate.analytics.sql.authorizer import DEID_FUNCTION
from fhirgate.analytics.sql.catalog import ViewInfo
from fhirgate.core.policy.pseudonym import Pseudonymizer
from fhirgate.core.policy.suppression import cell, check_column_type, column_types, suppress_small_cells

_SPEC = re.compile(r"[A-Za-z:]{1,80}")


@dataclass(frozen=True, slots=True)
class DeidContext:
    """What de-identified views need for one caller: its pseudonymizer and the day ages are counted at."""

    pseudo: Pseudonymizer
    today: dt.date


def column_specs(info: ViewInfo) -> tuple[str, ...]:
    """The Safe Harbor type of each of the view's columns, in column order (unknown columns: removed)."""
    types = column_types(info.columns, info.resource_type)
    specs = []
    for name in info.column_names:
        spec = check_column_type(types.get(name, "string"))
        if not _SPEC.fullmatch(spec):  # only ever inlined as a SQL string literal
            spec = "string"
        specs.append(spec)
    return tuple(specs)


def select_list(columns: Sequence[str], specs: Sequence[str], quote: Any) -> str:
    """The inner view's SELECT list: each column through fg_deid with its type, keeping the column name."""
    return ", ".join(f"{DEID_FUNCTION}('{s}', {quote(c)}) AS {quote(c)}" for c, s in zip(columns, specs, strict=True))


def deid_cell(context: DeidContext | None, spec: Any, value: Any) -> Any:
    """One de-identified value for SQLite; with no caller context (never expected), nothing leaves."""
    if context is None or not isinstance(spec, str):
        return None
    try:
        out = cell(check_column_type(spec), value, context.pseudo, context.today)[0]
    except Exception:  # fail closed on any odd cell
        return None
    return out if out is None or isinstance(out, str | int | float) else str(out)


def suppress_computed(columns: Sequence[dict[str, Any]], rows: list[list[Any]]) -> int:
    """Replace integer cells of 1-10 in computed columns (no declared type: aggregates, expressions) by "<11".

    Returns how many cells were suppressed. Columns read straight from a view keep their declared type and
    their values (already de-identified).
    """
    computed = [i for i, c in enumerate(columns) if not c.get("type")]
    changed = 0
    for row in rows:
        for i in computed:
            value = row[i]
            if isinstance(value, int) and not isinstance(value, bool):
                shown = suppress_small_cells(value)
                if shown != value:
                    row[i] = shown
                    changed += 1
    return changed
