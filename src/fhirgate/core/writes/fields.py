"""Checks of the values write tools take from a caller: FHIR ids and free text. Pure; messages never echo values."""

from __future__ import annotations

import unicodedata

from fhirgate.core.fhir.validate import ID_RE
from fhirgate.errors import InvalidInput


def fhir_id(param: str, value: object) -> str:
    """`value` as a FHIR id (FHIR R4 §2.24.0.1 id) or InvalidInput."""
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise InvalidInput(param, "not a FHIR id", "1-64 of A-Z a-z 0-9 - .")
    return value


def free_text(param: str, value: object, limit: int, *, multiline: bool) -> str:
    """Text stripped of surrounding blanks: 1..`limit` characters, no control characters (newlines and tabs
    allowed when `multiline`)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(param, "must be a non-empty string", f"at most {limit} characters")
    text = value.strip()
    if len(text) > limit:
        raise InvalidInput(param, "is too long", f"at most {limit} characters")
    allowed = "\n\r\t" if multiline else ""
    if any(unicodedata.category(ch) == "Cc" and ch not in allowed for ch in text):
        raise InvalidInput(param, "contains control characters", "newlines and tabs" if multiline else None)
    return text
