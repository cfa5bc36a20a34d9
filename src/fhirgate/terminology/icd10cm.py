"""ICD-10-CM from the `simple-icd-10-cm` package (the CMS tables with their hierarchy), normalized and cached.

Codes are returned in the dotted form FHIR uses for http://hl7.org/fhir/sid/icd-10-cm ("E11.9"); input may
be dotted or not and any case. Only categories and subcategories are codes; blocks ("E08-E13") and chapters
("4") appear as ancestors, never as codes.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fhirgate.errors import InvalidInput


@lru_cache(maxsize=1)
def _cm() -> Any:
    """The simple_icd_10_cm module, imported on first use: loading the CMS tables takes about a second, which
    every CLI command and server start would otherwise pay whether or not it looks a code up."""
    import simple_icd_10_cm

    return simple_icd_10_cm


# Letter, two alphanumerics, then up to four more after an optional dot (ICD-10-CM code structure).
_SHAPE = re.compile(r"[A-Z][0-9][0-9A-Z](\.?[0-9A-Z]{1,4})?")
MAX_CODE = 16


@dataclass(frozen=True, slots=True)
class IcdItem:
    """One ICD-10-CM item: code (dotted), description and kind (category, subcategory, block, chapter)."""

    code: str
    display: str
    kind: str


def normalize(code: str) -> str | None:
    """The dotted, upper-case form of an ICD-10-CM code, or None when it is not a code in the tables."""
    if not isinstance(code, str):
        return None
    text = code.strip().upper()
    if not text or len(text) > MAX_CODE or not _SHAPE.fullmatch(text):
        return None
    try:
        if not _cm().is_valid_item(text) or not _cm().is_category_or_subcategory(text):
            return None
        return str(_cm().add_dot(text))
    except (ValueError, KeyError):
        return None


def is_valid(code: str) -> bool:
    """True when `code` (dotted or not, any case) is an ICD-10-CM category or subcategory."""
    return normalize(code) is not None


def _kind(item: str) -> str:
    if _cm().is_chapter(item):
        return "chapter"
    if _cm().is_block(item):
        return "block"
    return "category" if _cm().is_category(item) else "subcategory"


def _require(code: str, param: str) -> str:
    found = normalize(code)
    if found is None:
        raise InvalidInput(param, "not an ICD-10-CM code", "a category or subcategory such as E11 or E11.9")
    return found


@lru_cache(maxsize=4096)
def display(code: str) -> str | None:
    """The CMS description of an ICD-10-CM code, or None when it is not one."""
    found = normalize(code)
    return str(_cm().get_description(found)) if found is not None else None


@lru_cache(maxsize=4096)
def ancestors(code: str, param: str = "code") -> tuple[IcdItem, ...]:
    """The code's ancestors, nearest first (parent category, block, chapter)."""
    found = _require(code, param)
    return tuple(IcdItem(str(a), str(_cm().get_description(a)), _kind(a)) for a in _cm().get_ancestors(found))


@lru_cache(maxsize=1024)
def descendants(code: str, param: str = "code") -> tuple[str, ...]:
    """Every code below this one in the hierarchy (for E11: all of E11.*), in table order."""
    found = _require(code, param)
    return tuple(str(_cm().add_dot(d)) for d in _cm().get_descendants(found))


def expand_below(code: str, param: str = "code") -> list[str]:
    """The code itself and all its descendants (FHIR `:below` on ICD-10-CM), dotted."""
    found = _require(code, param)
    return [found, *descendants(found, param)]


def item(code: str) -> IcdItem | None:
    """The item for a code (category or subcategory), or None."""
    found = normalize(code)
    if found is None:
        return None
    return IcdItem(found, str(_cm().get_description(found)), _kind(found))


_all_lock = threading.Lock()
_all: tuple[IcdItem, ...] | None = None


def all_codes() -> tuple[IcdItem, ...]:
    """Every ICD-10-CM category and subcategory with its description (built once, ~98,000 items)."""
    global _all
    with _all_lock:
        if _all is None:
            _all = tuple(
                IcdItem(str(c), str(_cm().get_description(c)), "category" if _cm().is_category(c) else "subcategory")
                for c in _cm().get_all_codes(with_dots=True)
                if _cm().is_category_or_subcategory(c)
            )
        return _all
