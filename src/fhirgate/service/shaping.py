"""Shaping results for an AI client: compact by default, real FHIR JSON on request, always bounded.

Compact form drops what a model rarely needs (meta, narrative, extensions) to save context; `fhir`
returns the stored resource as FHIR R4 JSON, narrowed by `_elements`/`_summary` when asked
(FHIR R4 §3.1.1.5.9 `_summary`, §3.1.1.5.10 `_elements`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from fhirgate.core.fhir.compact import apply_elements, compact, summary_mode
from fhirgate.core.fhir.facts import summary_line
from fhirgate.errors import InvalidInput
from fhirgate.store.contract import StoredResource

FORMATS = ("compact", "fhir")
SUMMARY_MODES = ("true", "text", "data", "false")
_ELEMENT = re.compile(r"[A-Za-z][A-Za-z0-9]*(\[x\])?")
_MAX_ELEMENTS = 40


def check_format(value: str) -> str:
    """The output format, or InvalidInput naming `format` and the allowed values."""
    if value not in FORMATS:
        raise InvalidInput("format", "unknown output format", ", ".join(FORMATS))
    return value


def check_elements(elements: Sequence[str] | None) -> tuple[str, ...]:
    """Validated top-level element names (FHIR `_elements`)."""
    if not elements:
        return ()
    if isinstance(elements, str) or len(elements) > _MAX_ELEMENTS:
        raise InvalidInput("elements", f"must be a list of at most {_MAX_ELEMENTS} element names", "e.g. ['code']")
    for name in elements:
        if not isinstance(name, str) or not _ELEMENT.fullmatch(name):
            raise InvalidInput("elements", "each entry must be a top-level element name", "e.g. code, valueQuantity")
    return tuple(elements)


def check_summary(value: str | None) -> str | None:
    """A FHIR `_summary` mode for format='fhir' (None = full resource)."""
    if value is None or value == "false":
        return None
    if value not in SUMMARY_MODES:
        raise InvalidInput("summary", "unknown summary mode", ", ".join(SUMMARY_MODES))
    return value


def shape(
    stored: StoredResource, fmt: str, elements: tuple[str, ...] = (), summary: str | None = None
) -> dict[str, Any]:
    """One resource in the requested format; compact entries always carry `ref`."""
    if fmt == "fhir":
        body: dict[str, Any] = stored.body
        if summary is not None:
            body = summary_mode(body, summary)
        if elements:
            body = apply_elements(body, list(elements))
        return body
    out = compact(stored.body, elements=list(elements) if elements else None)
    out.setdefault("ref", stored.ref)
    return out


def line(stored: StoredResource) -> str:
    """One human-readable line for a resource (for text mirrors)."""
    try:
        text = summary_line(stored.body)
    except Exception:  # a summary line must never fail a request
        text = stored.ref
    return text if text.startswith(stored.ref) else f"{stored.ref}: {text}"


def page_info(
    shown: int, total: int | None, next_cursor: str | None, *, limit_note: str | None = None
) -> dict[str, Any]:
    """The paging block every list result carries."""
    info: dict[str, Any] = {"returned": shown, "total": total, "next_cursor": next_cursor}
    if limit_note:
        info["note"] = limit_note
    return info


def strip_none(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy without None values (smaller payloads)."""
    return {k: v for k, v in data.items() if v is not None}
