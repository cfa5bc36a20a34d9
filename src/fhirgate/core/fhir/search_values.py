"""Typed FHIR search values and their grammar: escaping, prefixes, token, quantity and reference forms (pure).

Implements FHIR R4 §3.1.1.4 (parameter types) and §3.1.1.6 (escaping `\\,` `\\|` `\\$` `\\\\`); the parser
in core.fhir.search picks the parameter definition and hands each raw value here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from fhirgate.core.fhir.dates import parse_date_range
from fhirgate.core.fhir.normalize import normalize_text
from fhirgate.errors import InvalidInput

# Comparison prefixes for number, date and quantity (FHIR R4 §3.1.1.4 "prefixes").
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_TYPE_RE = re.compile(r"^[A-Z][A-Za-z]+$")
_DATE_FORMS = "YYYY, YYYY-MM, YYYY-MM-DD, YYYY-MM-DDThh:mm[:ss[.fff]][Z|+hh:mm], optional prefix " + "/".join(PREFIXES)


@dataclass(frozen=True, slots=True)
class TokenValue:
    """`code` (any system), `|code` (system ""= none), `system|code`, or `system|` (code None)."""

    system: str | None
    code: str | None
    any_system: bool = False


@dataclass(frozen=True, slots=True)
class StringValue:
    """A string value: `norm` for default and :contains matching, `raw` for :exact."""

    raw: str
    norm: str


@dataclass(frozen=True, slots=True)
class TextValue:
    """A `:text` value, normalized like strings."""

    norm: str


@dataclass(frozen=True, slots=True)
class DateValue:
    """A prefixed date: the inclusive [low, high] epoch-second range the value denotes."""

    prefix: str
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class NumberValue:
    """A prefixed number; [low, high) is its implicit precision range (FHIR R4 §3.1.1.4.2)."""

    prefix: str
    value: float
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class QuantityValue:
    """A prefixed quantity `number|system|code`; system/code None when not given."""

    prefix: str
    value: float
    low: float
    high: float
    system: str | None = None
    code: str | None = None


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    """A reference by `id`, `Type/id`, or absolute/canonical `url` (exactly one of id or url is set)."""

    type: str | None
    id: str | None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class UriValue:
    """A uri value, matched exactly or as a prefix (:below)."""

    uri: str


@dataclass(frozen=True, slots=True)
class MissingValue:
    """`:missing=true|false`."""

    missing: bool


Value = (
    TokenValue
    | StringValue
    | TextValue
    | DateValue
    | NumberValue
    | QuantityValue
    | ReferenceValue
    | UriValue
    | MissingValue
)


def split_unescaped(text: str, sep: str) -> list[str]:
    """Split on `sep` not preceded by a backslash; escapes stay in the parts (FHIR R4 §3.1.1.6)."""
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def unescape(text: str) -> str:
    """Resolve `\\,` `\\|` `\\$` `\\\\` to the literal character."""
    return re.sub(r"\\([,|$\\])", r"\1", text)


def _split_prefix(key: str, part: str) -> tuple[str, str]:
    if part[:2].isalpha():
        prefix = part[:2]
        if prefix not in PREFIXES:
            raise InvalidInput(key, f"unknown prefix '{part[:2]}'", ", ".join(PREFIXES))
        return prefix, part[2:]
    return "eq", part


def _number(key: str, text: str) -> tuple[float, float, float]:
    if not _NUMBER_RE.match(text):
        raise InvalidInput(key, "not a number", "a decimal such as 5, 5.40 or 1e3, optional prefix")
    try:
        dec = Decimal(text)
    except InvalidOperation:
        raise InvalidInput(key, "not a number") from None
    exponent = dec.as_tuple().exponent
    assert isinstance(exponent, int)
    # Implicit precision: "100" matches [99.5, 100.5), "100.00" matches [99.995, 100.005) (§3.1.1.4.2).
    half = Decimal(5).scaleb(exponent - 1)
    return float(dec), float(dec - half), float(dec + half)


def _token(key: str, part: str) -> TokenValue:
    pieces = split_unescaped(part, "|")
    if len(pieces) == 1:
        return TokenValue(None, unescape(pieces[0]), True)
    if len(pieces) != 2:
        raise InvalidInput(key, "too many '|' in token", "code, system|code, |code or system|")
    system, code = unescape(pieces[0]), unescape(pieces[1])
    if not system and not code:
        raise InvalidInput(key, "empty token", "code, system|code, |code or system|")
    return TokenValue(system, code or None, False)


def _quantity(key: str, prefix: str, rest: str) -> QuantityValue:
    pieces = split_unescaped(rest, "|")
    if len(pieces) not in (1, 3):
        raise InvalidInput(key, "bad quantity", "[prefix]number, number|system|code or number||code")
    value, low, high = _number(key, unescape(pieces[0]))
    system = unescape(pieces[1]) or None if len(pieces) == 3 else None
    code = unescape(pieces[2]) or None if len(pieces) == 3 else None
    return QuantityValue(prefix, value, low, high, system, code)


def _reference(key: str, part: str, ref_type: str | None) -> ReferenceValue:
    text = unescape(part)
    if ":" in text:  # absolute URL, urn:uuid:, canonical
        return ReferenceValue(ref_type, None, text)
    if "/" in text:
        rtype, _, rid = text.partition("/")
        if not _TYPE_RE.match(rtype) or not _ID_RE.match(rid):
            raise InvalidInput(key, "bad reference", "id, Type/id or an absolute URL")
        if ref_type is not None and rtype != ref_type:
            raise InvalidInput(key, f"reference type {rtype} conflicts with modifier :{ref_type}")
        return ReferenceValue(rtype, rid)
    if not _ID_RE.match(text):
        raise InvalidInput(key, "bad reference id", "id, Type/id or an absolute URL")
    return ReferenceValue(ref_type, text)


def _one(key: str, ptype: str, modifier: str | None, part: str, ref_type: str | None) -> Value:
    if modifier == "missing":
        if part not in ("true", "false"):
            raise InvalidInput(key, ":missing takes true or false", "true, false")
        return MissingValue(part == "true")
    if modifier == "text":
        return TextValue(normalize_text(unescape(part)))
    if ptype == "token":
        return _token(key, part)
    if ptype == "string":
        raw = unescape(part)
        return StringValue(raw, normalize_text(raw))
    if ptype == "uri":
        return UriValue(unescape(part))
    if ptype == "reference":
        return _reference(key, part, ref_type)
    prefix, rest = _split_prefix(key, part)
    if ptype == "date":
        try:
            low, high = parse_date_range(rest)
        except ValueError:
            raise InvalidInput(key, "not a FHIR date", _DATE_FORMS) from None
        return DateValue(prefix, low, high)
    if ptype == "number":
        value, low, high = _number(key, unescape(rest))
        return NumberValue(prefix, value, low, high)
    if ptype == "quantity":
        return _quantity(key, prefix, rest)
    raise InvalidInput(key, f"{ptype} parameters are not supported")


def parse_values(key: str, ptype: str, modifier: str | None, raw: str, *, ref_type: str | None = None) -> list[Value]:
    """The OR-ed values of one parameter occurrence (comma-separated, FHIR R4 §3.1.1.3)."""
    parts = split_unescaped(raw, ",")
    if any(p == "" for p in parts):
        raise InvalidInput(key, "empty value in comma-separated list")
    if modifier == "missing" and len(parts) != 1:
        raise InvalidInput(key, ":missing takes a single true or false")
    return [_one(key, ptype, modifier, p, ref_type) for p in parts]


def parse_ids(key: str, raw: str) -> list[str]:
    """The OR-ed logical ids of `_id`."""
    ids = [unescape(p) for p in split_unescaped(raw, ",")]
    for rid in ids:
        if not _ID_RE.match(rid):
            raise InvalidInput(key, "not a resource id", "1-64 of A-Z a-z 0-9 - .")
    return ids
