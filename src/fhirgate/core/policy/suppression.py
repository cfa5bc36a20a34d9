"""Tabular outputs: small-cell suppression of counts (with complementary suppression) and per-column
Safe Harbor rules for report, SQL and fact rows.

CMS cell size suppression policy: no cell counting 1 to 10 people (or events about them) may be shown;
such cells display as "<11". Zero is shown as 0: it counts nobody, so it cannot single anyone out, and
CMS's policy covers values 1-10. Primary suppression alone is not enough when totals are visible: one
hidden cell in a column whose total is shown is the total minus the others, so a second cell is hidden
too (complementary suppression).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from fhirgate.core.policy.pseudonym import Pseudonymizer
from fhirgate.core.policy.scrub import AGE_SENTINEL, MAX_AGE, over_89, scrub_text, year_of, zip3
from fhirgate.errors import InvalidInput

SMALL_CELL_THRESHOLD = 11


def _check_threshold(threshold: object) -> int:
    if isinstance(threshold, bool) or not isinstance(threshold, int) or not 2 <= threshold <= 1000:
        raise InvalidInput("threshold", "must be a whole number in range", "2 to 1000 (CMS uses 11)")
    return threshold


def suppressed_label(threshold: int = SMALL_CELL_THRESHOLD) -> str:
    """The text shown instead of a suppressed count, e.g. "<11"."""
    return f"<{_check_threshold(threshold)}"


def suppress_small_cells(value: int, threshold: int = SMALL_CELL_THRESHOLD) -> int | str:
    """A count as it may be shown: 1 to threshold-1 become "<threshold" ("<11"); 0 and larger counts stay."""
    limit = _check_threshold(threshold)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput("value", "must be a count", "a whole number >= 0")
    return f"<{limit}" if 0 < value < limit else value


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def suppress_rows(
    rows: Sequence[Mapping[str, Any]],
    count_columns: Sequence[str],
    *,
    threshold: int = SMALL_CELL_THRESHOLD,
    is_total: Callable[[Mapping[str, Any]], bool] | None = None,
) -> list[dict[str, Any]]:
    """Copies of `rows` with small counts suppressed and, where needed, a second cell suppressed.

    Primary: every count cell in `count_columns` from 1 to threshold-1 becomes "<threshold".
    Complementary (repeated until nothing changes), assuming column and row totals are known or shown:
    - in each count column, over the non-total rows: when exactly one cell is suppressed, the smallest
      other shown cell is suppressed too (0 included, first on ties); if there is none, the column's
      cell in the total rows (`is_total`) is suppressed instead;
    - in each row with two or more count columns: when exactly one of its cells is suppressed, the
      smallest other shown count cell of that row is suppressed too.
    Cells that are not whole numbers >= 0 are left as they are.
    """
    limit = _check_threshold(threshold)
    label = f"<{limit}"
    out = [dict(row) for row in rows if isinstance(row, Mapping)]
    totals = {i for i, row in enumerate(out) if is_total is not None and is_total(row)}
    body = [i for i in range(len(out)) if i not in totals]
    columns = [c for c in dict.fromkeys(count_columns) if isinstance(c, str)]
    for row in out:
        for col in columns:
            if _is_count(row.get(col)) and 0 < row[col] < limit:
                row[col] = label

    def _hide_smallest(cells: list[tuple[int, str]]) -> bool:
        shown = [(out[i][c], n, i, c) for n, (i, c) in enumerate(cells) if _is_count(out[i].get(c))]
        if not shown:
            return False
        _, _, i, c = min(shown)
        out[i][c] = label
        return True

    changed = True
    while changed:
        changed = False
        for col in columns:
            cells = [(i, col) for i in body if col in out[i]]
            if sum(1 for i, c in cells if out[i][c] == label) != 1:
                continue
            if _hide_smallest(cells) or _hide_smallest([(i, col) for i in sorted(totals) if col in out[i]]):
                changed = True
        if len(columns) > 1:
            for i in body:
                cells = [(i, c) for c in columns if c in out[i]]
                if sum(1 for _, c in cells if out[i][c] == label) == 1 and _hide_smallest(cells):
                    changed = True
    return out


# ---- Safe Harbor for tabular outputs: one column type per column (SafeHarbor.rows) ------------------------

COLUMN_TYPES: frozenset[str] = frozenset(
    {"id", "reference", "date", "dateTime", "instant", "birthDate", "string", "markdown", "display", "code",
     "decimal", "integer", "positiveInt", "unsignedInt", "integer64", "boolean", "time", "uri", "uri:system",
     "zip", "state", "country", "age", "count"}
)  # fmt: skip
_KEPT_SCALARS = frozenset({"decimal", "integer", "positiveInt", "unsignedInt", "integer64"})
_ID_TYPE = re.compile(r"id:([A-Z][A-Za-z]{0,63})")


def check_column_type(spec: object) -> str:
    """A column type accepted by SafeHarbor.rows, or InvalidInput naming the allowed ones."""
    if isinstance(spec, str) and (spec in COLUMN_TYPES or _ID_TYPE.fullmatch(spec)):
        return spec
    raise InvalidInput("columns", "unknown column type", "id:<ResourceType>, " + ", ".join(sorted(COLUMN_TYPES)))


def cell(spec: str, value: Any, pseudo: Pseudonymizer, today: dt.date) -> tuple[Any, str, str]:
    """(new value, action, letter) for one table cell; action is "kept", "removed", "generalized" or
    "pseudonymized"; removed cells become None. `spec` must have passed check_column_type."""
    if value is None:
        return None, "kept", ""
    if spec.startswith("id"):
        if not isinstance(value, str) or not value or len(value) > 256:
            return None, "removed", "R"
        return pseudo.pid(spec[3:] or "Resource", value), "pseudonymized", ""
    if spec == "reference":
        ref = pseudo.ref(value) if isinstance(value, str) else None
        return (ref, "pseudonymized", "") if ref is not None else (None, "removed", "N")
    if spec in ("date", "dateTime", "instant"):
        year = year_of(value)
        return (year, "generalized", "C") if year is not None else (None, "removed", "C")
    if spec == "birthDate":
        year = year_of(value)
        if year is None:
            return None, "removed", "C"
        return (AGE_SENTINEL if over_89(value, today) else year), "generalized", "C"
    if spec == "age":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return (AGE_SENTINEL, "generalized", "C") if value > MAX_AGE else (value, "kept", "")
        return None, "removed", "C"
    if spec == "count":
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            shown = suppress_small_cells(value)
            return shown, ("generalized" if shown != value else "kept"), ("R" if shown != value else "")
        return None, "removed", "R"
    if spec == "zip":
        short = zip3(value)
        return (short, "generalized", "B") if short is not None else (None, "removed", "B")
    if spec in _KEPT_SCALARS:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return (value, "kept", "") if ok else (None, "removed", "R")
    if spec == "boolean":
        return (value, "kept", "") if isinstance(value, bool | int) else (None, "removed", "R")
    if spec in ("code", "display", "time", "uri:system", "state", "country"):
        if not isinstance(value, str) or len(value) > 1024:
            return None, "removed", "R"
        text, found = scrub_text(value, long_numbers=spec not in ("code", "uri:system"))
        if found and spec != "display":
            return None, "removed", sorted(found)[0]
        return (text, "generalized", sorted(found)[0]) if found else (value, "kept", "")
    return None, "removed", "N" if spec == "uri" else "R"  # string, markdown, uri


_DISPLAY_PATH = re.compile(
    r"(?:^|\.)coding(?:\.first\(\))?\.display$|^display$"
    r"|(?:^|\.)(?:code|type|class|category|serviceType|serviceCategory|productOrService|vaccineCode|reasonCode"
    r"|specialty|relationship|maritalStatus|(?:medication|chargeItem|value|item)\.ofType\(CodeableConcept\))"
    r"(?:\.first\(\))?\.text$|(?:valueQuantity|ofType\(Quantity\))\.unit$"
)
_REFERENCE_KEY = re.compile(r"getReferenceKey\(([A-Z][A-Za-z]{0,63})\)")
_ADDRESS_PART = re.compile(r"address(?:\.first\(\))?\.(state|country|postalCode)$")


def column_types(columns: Iterable[Any], resource_type: str) -> dict[str, str]:
    """Column types for SafeHarbor.rows from SQL-on-FHIR view columns (objects with name, fhir_type, path,
    collection, like analytics ViewColumn) of a view over `resource_type`. Conservative: strings are
    "string" (removed) unless the path is a Coding display, a coded CodeableConcept.text or a Quantity
    unit; ids take their type from getResourceKey()/getReferenceKey(Type); collections of text are removed."""
    out: dict[str, str] = {}
    for col in columns:
        name, ftype = getattr(col, "name", None), getattr(col, "fhir_type", None)
        path = str(getattr(col, "path", "") or "")
        if not isinstance(name, str):
            continue
        if getattr(col, "collection", False):
            out[name] = "code" if ftype in ("code", "boolean") else "string"
        elif ftype == "id":
            ref = _REFERENCE_KEY.search(path)
            own = "getResourceKey()" in path or (name == "id" and not path)
            out[name] = f"id:{ref.group(1)}" if ref else f"id:{resource_type}" if own else "id"
        elif ftype == "uri":
            out[name] = "uri:system" if path == "system" or path.endswith(".system") else "uri"
        elif ftype == "date" and path == "birthDate":
            out[name] = "birthDate"
        elif ftype in ("string", "markdown"):
            part = _ADDRESS_PART.search(path)
            spec = {"state": "state", "country": "country", "postalCode": "zip"}[part.group(1)] if part else None
            out[name] = spec or ("display" if _DISPLAY_PATH.search(path) else "string")
        elif isinstance(ftype, str) and ftype in COLUMN_TYPES:
            out[name] = ftype
        else:
            out[name] = "string"
    return out


def deidentify_rows(
    rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str], pseudo: Pseudonymizer, today: dt.date
) -> tuple[list[dict[str, Any]], dict[str, set[str]], dict[str, set[str]], set[str]]:
    """(rows, removed, generalized, pseudonymized paths): the engine of SafeHarbor.rows_with_report."""
    if not isinstance(columns, Mapping):
        raise InvalidInput("columns", "must map column name to column type", "e.g. {'patient_id': 'id:Patient'}")
    specs = {name: check_column_type(spec) for name, spec in columns.items()}
    if isinstance(rows, str | bytes) or not isinstance(rows, Sequence):
        raise InvalidInput("rows", "must be a list of row objects")
    removed: dict[str, set[str]] = {}
    generalized: dict[str, set[str]] = {}
    pseudonymized: set[str] = set()
    out: list[dict[str, Any]] = []
    for row in rows:
        if not isinstance(row, Mapping):
            removed.setdefault("rows", set()).add("R")
            continue
        new: dict[str, Any] = {}
        for name, value in row.items():
            path = f"rows.{name}"
            spec = specs.get(name) if isinstance(name, str) else None
            if spec is None:
                new[name] = None
                if value is not None:
                    removed.setdefault(path, set()).add("R")
                continue
            try:
                new[name], action, letter = cell(spec, value, pseudo, today)
            except Exception:  # fail closed on any odd cell
                new[name], action, letter = None, "removed", "R"
            if action == "removed":
                removed.setdefault(path, set()).add(letter)
            elif action == "generalized":
                generalized.setdefault(path, set()).add(letter)
            elif action == "pseudonymized":
                pseudonymized.add(path)
        out.append(new)
    return out, removed, generalized, pseudonymized
