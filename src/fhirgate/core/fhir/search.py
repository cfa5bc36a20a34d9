"""The typed FHIR search query and its parser: URL parameters in, a validated SearchQuery out (pure).

Every store backend runs the same SearchQuery, so parameter semantics (FHIR R4 §3.1.1 search) are
decided here once: unknown parameters, modifiers the type does not allow, bad prefixes and malformed
values are all InvalidInput errors naming the parameter and what is allowed (strict handling, §3.1.1.0).
The value grammar (escaping, prefixes, token and quantity forms) lives in core.fhir.search_values.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from fhirgate.core.fhir.definitions import SearchParamDef, search_param, search_params
from fhirgate.core.fhir.search_values import (
    PREFIXES,
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
    parse_ids,
    parse_values,
    split_unescaped,
)
from fhirgate.errors import InvalidInput

__all__ = [
    "DEFAULT_COUNT",
    "MAX_COUNT",
    "PREFIXES",
    "Clause",
    "DateValue",
    "Include",
    "MissingValue",
    "NumberValue",
    "QuantityValue",
    "ReferenceValue",
    "SearchQuery",
    "SortKey",
    "StringValue",
    "TextValue",
    "TokenValue",
    "UriValue",
    "Value",
    "parse_search",
]

DEFAULT_COUNT = 20
MAX_COUNT = 100
SUMMARY_VALUES = ("true", "text", "data", "count", "false")
TOTAL_VALUES = ("none", "estimate", "accurate")
# Parameter types this server can search; composite and special are rejected (FHIR R4 §3.1.1.4).
SEARCHABLE_TYPES = ("token", "string", "date", "reference", "quantity", "number", "uri")
SORTABLE_TYPES = ("date", "string", "token", "number", "quantity")
# Modifiers per parameter type (FHIR R4 §3.1.1.5); token :below only where the definition lists it.
MODIFIERS: dict[str, tuple[str, ...]] = {
    "string": ("exact", "contains", "missing"),
    "token": ("not", "text", "below", "missing"),
    "reference": ("missing", "text", "[Type]"),
    "date": ("missing",),
    "number": ("missing",),
    "quantity": ("missing",),
    "uri": ("below", "missing"),
}
RESULT_PARAMS = ("_count", "_offset", "_sort", "_include", "_revinclude", "_elements", "_summary", "_total")
_ELEMENT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*(\[x\])?$")
_TYPE_RE = re.compile(r"^[A-Z][A-Za-z]+$")


@dataclass(frozen=True, slots=True)
class Clause:
    """One search condition: a parameter, its modifier and OR-ed values (FHIR R4 §3.1.1.3).

    A chained clause (`subject:Patient.name=x`, §3.1.1.4.13) has `chain_type` set, no values, and
    `chained` holding the condition on the referenced resource.
    """

    code: str
    type: str
    modifier: str | None = None
    values: tuple[Value, ...] = ()
    chain_type: str | None = None
    chained: Clause | None = None


@dataclass(frozen=True, slots=True)
class SortKey:
    """One `_sort` key; `type` is the parameter type, or `_id` / `_lastUpdated` for those two."""

    code: str
    type: str
    descending: bool = False


@dataclass(frozen=True, slots=True)
class Include:
    """An `_include` (source = the searched type) or `_revinclude` (target = the searched type)."""

    source_type: str
    param: str
    target_type: str | None = None


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """A validated search: clauses are AND-ed; `compartment` is set only by the service layer."""

    resource_type: str
    clauses: tuple[Clause, ...] = ()
    count: int = DEFAULT_COUNT
    offset: int = 0
    sort: tuple[SortKey, ...] = ()
    includes: tuple[Include, ...] = ()
    revincludes: tuple[Include, ...] = ()
    elements: tuple[str, ...] = ()
    summary: str | None = None
    total: bool = False
    # A Patient id: every match and every included resource must be in that patient's compartment.
    compartment: str | None = None


def _allowed_codes(resource_type: str) -> str:
    defs = search_params(resource_type)
    codes = sorted(c for c, d in defs.items() if d.type in SEARCHABLE_TYPES and not c.startswith("_"))
    head = ", ".join(["_id", "_lastUpdated", *codes[:12]])
    return head + (f", ... ({len(codes)} in all)" if len(codes) > 12 else "")


def _definition(resource_type: str, code: str, key: str) -> SearchParamDef:
    definition = search_param(resource_type, code)
    if definition is None:
        raise InvalidInput(key, f"unknown search parameter for {resource_type}", _allowed_codes(resource_type))
    if definition.type not in SEARCHABLE_TYPES:
        raise InvalidInput(key, f"{definition.type} search parameters are not supported", ", ".join(SEARCHABLE_TYPES))
    return definition


def _check_modifier(key: str, definition: SearchParamDef, modifier: str | None) -> None:
    if modifier is None:
        return
    allowed = MODIFIERS[definition.type]
    ok = modifier in allowed
    if definition.type == "token" and modifier == "below":
        ok = "below" in definition.modifiers
        allowed = tuple(m for m in allowed if m != "below")
    if definition.type == "reference" and modifier == "text":
        ok = True
    if not ok:
        raise InvalidInput(
            key,
            f"modifier :{modifier} is not allowed on {definition.type} parameter {definition.code}",
            ", ".join(":" + m for m in allowed),
        )


def _reference_type_modifier(key: str, definition: SearchParamDef, modifier: str) -> str:
    if not _TYPE_RE.match(modifier):
        raise InvalidInput(
            key, f"modifier :{modifier} is not allowed on reference parameter {definition.code}",
            ":missing, :text, or a target type: " + ", ".join(definition.targets),
        )  # fmt: skip
    if definition.targets and modifier not in definition.targets:
        raise InvalidInput(key, f"{modifier} is not a target type of {definition.code}", ", ".join(definition.targets))
    return modifier


def _simple_clause(resource_type: str, key: str, code: str, modifier: str | None, raw: str) -> Clause:
    if code == "_id":
        if modifier is not None:
            raise InvalidInput(key, "_id takes no modifier")
        ids = tuple(TokenValue(None, v, True) for v in parse_ids(key, raw))
        return Clause("_id", "token", None, ids)
    if code == "_lastUpdated":
        if modifier is not None:
            raise InvalidInput(key, "_lastUpdated takes no modifier")
        return Clause("_lastUpdated", "date", None, tuple(parse_values(key, "date", None, raw)))
    definition = _definition(resource_type, code, key)
    target: str | None = None
    if definition.type == "reference" and modifier not in (None, "missing", "text"):
        assert modifier is not None
        target = _reference_type_modifier(key, definition, modifier)
    else:
        _check_modifier(key, definition, modifier)
    _check_comparators(key, definition, modifier, raw)
    values = parse_values(key, definition.type, modifier, raw, ref_type=target)
    return Clause(code, definition.type, modifier, tuple(values))


def _check_comparators(key: str, definition: SearchParamDef, modifier: str | None, raw: str) -> None:
    if modifier is not None or not definition.comparators or definition.type not in ("date", "number", "quantity"):
        return
    for part in split_unescaped(raw, ","):
        prefix = part[:2]
        if prefix in PREFIXES and prefix != "eq" and prefix not in definition.comparators:
            raise InvalidInput(
                key, f"prefix {prefix} is not allowed on {definition.code}", ", ".join(definition.comparators)
            )


def _chained_clause(resource_type: str, key: str, head: str, tail: str, raw: str) -> Clause:
    code, _, type_modifier = head.partition(":")
    definition = _definition(resource_type, code, key)
    if definition.type != "reference":
        raise InvalidInput(key, f"chaining needs a reference parameter; {code} is {definition.type}")
    if "." in tail:
        raise InvalidInput(key, "only one level of chaining is supported")
    if type_modifier:
        target = _reference_type_modifier(key, definition, type_modifier)
    elif len(definition.targets) == 1:
        target = definition.targets[0]
    else:
        raise InvalidInput(
            key,
            f"{code} may reference several types; name one as {code}:[Type].{tail}",
            ", ".join(definition.targets) or "any resource type",
        )
    inner_code, _, inner_modifier = tail.partition(":")
    try:
        search_params(target)
    except InvalidInput:
        raise InvalidInput(key, f"chained target type {target} is not supported") from None
    inner = _simple_clause(target, key, inner_code, inner_modifier or None, raw)
    return Clause(code, "reference", None, (), chain_type=target, chained=inner)


def _parse_int(key: str, raw: str, low: int, high: int | None) -> int:
    if not re.fullmatch(r"\d{1,9}", raw):
        raise InvalidInput(key, "must be a whole number", f"{low}..{high}" if high is not None else f">= {low}")
    value = int(raw)
    if value < low or (high is not None and value > high):
        raise InvalidInput(key, f"{value} is out of range", f"{low}..{high}" if high is not None else f">= {low}")
    return value


def _parse_sort(resource_type: str, raw: str) -> tuple[SortKey, ...]:
    keys: list[SortKey] = []
    for item in raw.split(","):
        descending = item.startswith("-")
        code = item[1:] if descending else item
        if code in ("_id", "_lastUpdated"):
            keys.append(SortKey(code, code, descending))
            continue
        definition = search_param(resource_type, code) if code else None
        if definition is None or definition.type not in SORTABLE_TYPES:
            sortable = sorted(c for c, d in search_params(resource_type).items() if d.type in SORTABLE_TYPES)
            raise InvalidInput(
                "_sort", f"cannot sort {resource_type} by '{code}'", ", ".join(["_id", "_lastUpdated", *sortable[:12]])
            )
        keys.append(SortKey(code, definition.type, descending))
    return tuple(keys)


def _parse_include(resource_type: str, key: str, raw: str, *, reverse: bool) -> Include:
    parts = raw.split(":")
    if raw == "*" or len(parts) not in (2, 3):
        raise InvalidInput(key, "expected SourceType:param[:TargetType]", "e.g. Observation:subject")
    source, code = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if not reverse and source != resource_type:
        raise InvalidInput(
            key, f"_include source must be the searched type {resource_type}; _include:iterate is not supported"
        )
    try:
        definition = search_param(source, code)
    except InvalidInput:
        raise InvalidInput(key, f"{source} is not a supported resource type") from None
    if definition is None or definition.type != "reference":
        refs = sorted(c for c, d in search_params(source).items() if d.type == "reference")
        raise InvalidInput(key, f"{code} is not a reference parameter of {source}", ", ".join(refs[:15]))
    if target is not None and definition.targets and target not in definition.targets:
        raise InvalidInput(key, f"{target} is not a target of {source}:{code}", ", ".join(definition.targets))
    if reverse:
        if target is not None and target != resource_type:
            raise InvalidInput(key, f"_revinclude target must be the searched type {resource_type}")
        if definition.targets and resource_type not in definition.targets:
            raise InvalidInput(key, f"{source}:{code} cannot reference {resource_type}", ", ".join(definition.targets))
        target = resource_type
    return Include(source, code, target)


def _parse_elements(raw: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in raw.split(",") if n.strip())
    for name in names:
        if not _ELEMENT_RE.match(name):
            raise InvalidInput("_elements", f"'{name[:40]}' is not an element name", "top-level names, comma-separated")
    return names


def parse_search(resource_type: str, params: Sequence[tuple[str, str]]) -> SearchQuery:
    """Parse URL search parameters (name, value) for one resource type into a SearchQuery."""
    search_params(resource_type)  # raises InvalidInput for unsupported types
    clauses: list[Clause] = []
    count, offset, total = DEFAULT_COUNT, 0, False
    summary: str | None = None
    sort: tuple[SortKey, ...] = ()
    elements: tuple[str, ...] = ()
    includes: list[Include] = []
    revincludes: list[Include] = []
    seen: set[str] = set()
    for key, raw in params:
        if key in ("_count", "_offset", "_sort", "_elements", "_summary", "_total"):
            if key in seen:
                raise InvalidInput(key, "given more than once")
            seen.add(key)
        if key == "_count":
            count = _parse_int(key, raw, 0, MAX_COUNT)
        elif key == "_offset":
            offset = _parse_int(key, raw, 0, None)
        elif key == "_sort":
            sort = _parse_sort(resource_type, raw)
        elif key == "_elements":
            elements = _parse_elements(raw)
        elif key == "_summary":
            if raw not in SUMMARY_VALUES:
                raise InvalidInput(key, f"unknown value '{raw[:20]}'", ", ".join(SUMMARY_VALUES))
            summary = None if raw == "false" else raw
        elif key == "_total":
            if raw not in TOTAL_VALUES:
                raise InvalidInput(key, f"unknown value '{raw[:20]}'", ", ".join(TOTAL_VALUES))
            total = raw != "none"
        elif key in ("_include", "_revinclude"):
            target_list = revincludes if key == "_revinclude" else includes
            target_list.append(_parse_include(resource_type, key, raw, reverse=key == "_revinclude"))
        elif key.startswith(("_include:", "_revinclude:")):
            raise InvalidInput(key, "_include/_revinclude modifiers (:iterate) are not supported; one level only")
        else:
            if raw == "":
                raise InvalidInput(key, "empty value")
            head, dot, tail = key.partition(".")
            if dot:
                clauses.append(_chained_clause(resource_type, key, head, tail, raw))
            else:
                code, _, modifier = head.partition(":")
                clauses.append(_simple_clause(resource_type, key, code, modifier or None, raw))
    if summary == "count":
        count = 0
    if count == 0:
        total = True  # _count=0: the total only
    return SearchQuery(
        resource_type=resource_type,
        clauses=tuple(clauses),
        count=count,
        offset=offset,
        sort=sort,
        includes=tuple(includes),
        revincludes=tuple(revincludes),
        elements=elements,
        summary=summary,
        total=total,
        compartment=None,
    )
