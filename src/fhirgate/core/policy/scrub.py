"""Value-level Safe Harbor rules: dates to year, ZIP3, ages over 89, identifier kinds, pattern scrubbing.

HIPAA Safe Harbor, 45 CFR 164.514(b)(2)(i)(A)-(R). Everything here works on one value at a time and never
raises for odd input (it returns None, meaning "drop the value"); the resource walker is in `deid.py`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

# The 18 identifier kinds of 164.514(b)(2)(i), by the letter of the regulation.
SAFE_HARBOR_KINDS: dict[str, str] = {
    "A": "names",
    "B": "geographic subdivisions smaller than a state",
    "C": "dates (except year) and ages over 89",
    "D": "telephone numbers",
    "E": "fax numbers",
    "F": "email addresses",
    "G": "social security numbers",
    "H": "medical record numbers",
    "I": "health plan beneficiary numbers",
    "J": "account numbers",
    "K": "certificate/license numbers",
    "L": "vehicle identifiers and serial numbers",
    "M": "device identifiers and serial numbers",
    "N": "web URLs",
    "O": "IP addresses",
    "P": "biometric identifiers",
    "Q": "full-face photographs and comparable images",
    "R": "any other unique identifying number, characteristic or code",
}

# 164.514(b)(2)(i)(B): ZIP3 areas with 20,000 people or fewer (2000 Census, HHS de-identification guidance
# of 2012, section 3.4) must become 000.
RESTRICTED_ZIP3: frozenset[str] = frozenset(
    {"036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878", "879", "884", "890",
     "893"}
)  # fmt: skip
AGE_SENTINEL = "90+"
_MAX_DEPTH = 48
MAX_AGE = 89

_DATE = re.compile(
    r"(\d{4})(?:-(0[1-9]|1[0-2])(?:-(0[1-9]|[12]\d|3[01])"
    r"(?:T[0-2]\d:[0-5]\d(?::[0-6]\d(?:\.\d{1,9})?)?(?:Z|[+-][01]\d:[0-5]\d)?)?)?)?"
)
_US_ZIP = re.compile(r"(\d{3})\d{2}(?:-?\d{4})?")
_US_COUNTRIES = frozenset({"", "us", "usa", "u.s.", "u.s.a.", "united states", "united states of america"})
_AGE_UNITS_PER_YEAR = {"a": 1.0, "mo": 12.0, "wk": 52.0, "d": 365.0, "h": 8760.0, "min": 525600.0}

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("N", re.compile(r"\b(?:https?|ftp)://\S+|\bwww\.\S+", re.IGNORECASE)),
    ("F", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")),
    ("O", re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b|\b(?:[0-9a-f]{1,4}:){3,7}[0-9a-f]{1,4}\b", re.IGNORECASE)),
    ("G", re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),
    ("D", re.compile(r"(?:\+?1[\s.-]?)?\(?\b\d{3}\)?[\s.-]?\d{3}[\s.-]\d{4}\b")),
    ("C", re.compile(r"\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}/\d{1,2}/\d{2,4}\b")),
    ("B", re.compile(r"\b\d{5}-\d{4}\b")),
    ("R", re.compile(r"\b[A-Z]{0,4}\d{7,}\b")),
)
REDACTED = "[redacted]"

# Identifier.type codes (HL7 v2 table 0203) and system fragments, mapped to the regulation's letters.
_TYPE_KINDS = {
    "SS": "G", "SSN": "G", "MR": "H", "MRT": "H", "MB": "I", "MC": "I", "MA": "I", "SN": "I",
    "AN": "J", "ACSN": "J", "BA": "J", "DL": "K", "PPN": "K", "LN": "K", "MD": "K", "DEA": "K",
    "UDI": "M", "SNO": "M",
}  # fmt: skip
_SYSTEM_KINDS = (("ssn", "G"), ("mrn", "H"), ("member", "I"), ("subscriber", "I"), ("account", "J"),
                 ("claim", "J"), ("invoice", "J"), ("license", "K"), ("licence", "K"), ("udi", "M"))  # fmt: skip
_RESOURCE_KINDS = {
    "Coverage": "I", "Account": "J", "Claim": "J", "ClaimResponse": "J", "ExplanationOfBenefit": "J",
    "Invoice": "J", "PaymentNotice": "J", "PaymentReconciliation": "J", "Device": "M",
}  # fmt: skip
_CONTACT_KINDS = {"phone": "D", "pager": "D", "sms": "D", "fax": "E", "email": "F", "url": "N"}


def year_of(value: object) -> str | None:
    """The year of a FHIR date, dateTime or instant ("1957-03-04T..." -> "1957"), or None when malformed."""
    if not isinstance(value, str):
        return None
    match = _DATE.fullmatch(value.strip())
    return match.group(1) if match else None


def max_age(birth: object, today: dt.date) -> int | None:
    """The largest age in whole years the (possibly partial) birth date allows at `today`, or None if malformed.

    A partial date is read as its earliest day (1 January, or the 1st of the month) so the age is never
    understated: a person who might be 90 is treated as 90 (164.514(b)(2)(i)(C) errs toward grouping).
    """
    if not isinstance(birth, str):
        return None
    match = _DATE.fullmatch(birth.strip())
    if match is None:
        return None
    year, month, day = int(match.group(1)), int(match.group(2) or 1), int(match.group(3) or 1)
    return today.year - year - (1 if (today.month, today.day) < (month, day) else 0)


def over_89(birth: object, today: dt.date) -> bool:
    """True when the birth date implies, or might imply, an age over 89 at `today` (malformed counts as over)."""
    age = max_age(birth, today)
    return age is None or age > MAX_AGE


def cap_age(quantity: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """An Age quantity with ages over 89 replaced by `>= 90 a` (UCUM years); (value, changed).

    FHIR Age allows the comparator, so `{"value": 90, "comparator": ">=", "unit": "years", ...}` is the
    valid FHIR form of the Safe Harbor "90 or older" category. An unreadable value is capped too.
    """
    out = {k: v for k, v in quantity.items() if k in ("value", "comparator", "unit", "system", "code")}
    value, code = out.get("value"), out.get("code")
    per_year = _AGE_UNITS_PER_YEAR.get(code if isinstance(code, str) else "a", 1.0)
    years = value / per_year if isinstance(value, int | float) and not isinstance(value, bool) else None
    comparator = out.get("comparator")
    if years is not None and comparator in ("<", "<="):
        return out, False  # an upper bound never says "over 89"
    if years is not None and (years < MAX_AGE or (years == MAX_AGE and comparator != ">")):
        return out, False
    ucum = "http://unitsofmeasure.org"
    return {"value": MAX_AGE + 1, "comparator": ">=", "unit": "years", "system": ucum, "code": "a"}, True


def zip3(postal_code: object, country: object = None) -> str | None:
    """The Safe Harbor form of a US ZIP: its first three digits, or "000" for the 17 restricted ZIP3 areas.

    Returns None (drop it) for anything that is not a US ZIP or ZIP+4, or when the country is not the US.
    """
    if not isinstance(postal_code, str):
        return None
    if country is not None and (not isinstance(country, str) or country.strip().lower() not in _US_COUNTRIES):
        return None
    match = _US_ZIP.fullmatch(postal_code.strip())
    if match is None:
        return None
    return "000" if match.group(1) in RESTRICTED_ZIP3 else match.group(1)


def names_in(value: Any, out: set[str], depth: int = 0) -> None:
    """Collect HumanName parts (family, given, text) found anywhere in raw JSON."""
    if depth > _MAX_DEPTH:
        return
    if isinstance(value, Mapping):
        if "family" in value or "given" in value:
            for part in ("family", "given", "text"):
                item = value.get(part)
                out.update(x for x in (item if isinstance(item, list) else [item]) if isinstance(x, str))
        for item in value.values():
            names_in(item, out, depth + 1)
    elif isinstance(value, list):
        for item in value:
            names_in(item, out, depth + 1)


def name_tokens(names: Iterable[object]) -> frozenset[str]:
    """Whole-word name tokens of at least 3 letters, lowercased, from HumanName parts (for scrub_text)."""
    tokens: set[str] = set()
    for name in names:
        if isinstance(name, str):
            tokens.update(t.lower() for t in re.findall(r"[^\W\d_]{3,}", name))
    return frozenset(tokens)


@lru_cache(maxsize=8192)
def _scrub_patterns(text: str, long_numbers: bool) -> tuple[str, frozenset[str]]:
    """The pattern part of scrub_text, cached: code displays repeat across thousands of resources."""
    if "@" not in text and "://" not in text and "www." not in text.lower() and not any(c.isdigit() for c in text):
        return text, frozenset()  # every pattern needs a digit, "@", "://" or "www."
    kinds: set[str] = set()
    out = text
    for kind, pattern in _PATTERNS:
        if kind == "R" and not long_numbers:
            continue
        out, count = pattern.subn(REDACTED, out)
        if count:
            kinds.add(kind)
    return out, frozenset(kinds)


def scrub_text(
    text: str, names: frozenset[str] = frozenset(), *, long_numbers: bool = True
) -> tuple[str, frozenset[str]]:
    """Replace identifier-looking substrings (URLs, emails, IPs, SSNs, phones, dates, ZIP+4, long numbers)
    and the given name tokens (whole words, case-insensitive) with "[redacted]"; returns (text, kinds found).
    `long_numbers=False` skips the 7+ digit rule (R), for codes such as SNOMED CT ids.

    A best-effort guard for strings that are kept because they are code displays or units; it is NOT a
    free-text de-identifier: notes, narratives and comments are removed, never scrubbed.
    """
    out, found = _scrub_patterns(text, long_numbers)
    kinds = set(found)
    if names:

        def _name(match: re.Match[str]) -> str:
            if match.group(0).lower() in names:
                kinds.add("A")
                return REDACTED
            return match.group(0)

        out = re.sub(r"[^\W\d_]{3,}", _name, out)
    return out, frozenset(kinds)


def identifier_kind(identifier: object, resource_type: str) -> str:
    """The Safe Harbor letter an Identifier falls under (SSN G, MRN H, plan I, account J, licence K, device M,
    else R), read from Identifier.type codes, then the system URI, then the owning resource type."""
    if isinstance(identifier, Mapping):
        kind_type = identifier.get("type")
        codings = kind_type.get("coding") if isinstance(kind_type, Mapping) else None
        for coding in codings if isinstance(codings, list) else ():
            code = coding.get("code") if isinstance(coding, Mapping) else None
            if isinstance(code, str) and code.upper() in _TYPE_KINDS:
                return _TYPE_KINDS[code.upper()]
        system = identifier.get("system")
        if isinstance(system, str):
            for fragment, kind in _SYSTEM_KINDS:
                if fragment in system.lower():
                    return kind
    return _RESOURCE_KINDS.get(resource_type, "R")


def contact_kind(contact: object) -> str:
    """The Safe Harbor letter of a ContactPoint: phone D, fax E, email F, url N (others D)."""
    system = contact.get("system") if isinstance(contact, Mapping) else None
    return _CONTACT_KINDS.get(system, "D") if isinstance(system, str) else "D"
