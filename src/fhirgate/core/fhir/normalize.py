"""String normalization for FHIR string search: case- and accent-insensitive (FHIR R4 §3.1.1.4.7)."""

from __future__ import annotations

import unicodedata
from functools import lru_cache


@lru_cache(maxsize=65536)
def normalize_text(value: str) -> str:
    """Casefold, strip combining accents and collapse whitespace, so "Zoë  O'Brien" ~ "zoe o'brien"."""
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())
