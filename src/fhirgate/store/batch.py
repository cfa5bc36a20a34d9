"""Checks and splitting of a write batch, shared by the store backends (SQLite, PostgreSQL)."""

from __future__ import annotations

import re
from typing import Any

from fhirgate.errors import ValidationFailed

# FHIR R4 §2.24.0.1 id: 1-64 of [A-Za-z0-9\-\.]
ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
TYPE_RE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")


def is_key(rtype: object, rid: object) -> bool:
    """Whether (resourceType, id) are well-formed strings (prepared items are checked with it)."""
    return type(rtype) is str and TYPE_RE.match(rtype) is not None and type(rid) is str and ID_RE.match(rid) is not None


def check_key(index: int, resource: Any) -> tuple[str, str]:
    """(resourceType, id) of the batch's `index`-th resource; ValidationFailed naming the position otherwise."""
    if not isinstance(resource, dict):
        raise ValidationFailed("not a JSON object", location=f"resources[{index}]")
    rtype, rid = resource.get("resourceType"), resource.get("id")
    if not isinstance(rtype, str) or not TYPE_RE.match(rtype):
        raise ValidationFailed("resourceType missing or malformed", location=f"resources[{index}]")
    if not isinstance(rid, str) or not ID_RE.match(rid):
        raise ValidationFailed("id missing or malformed (1-64 of A-Z a-z 0-9 - .)", location=f"resources[{index}]")
    return rtype, rid


def rounds(keys: list[tuple[str, str]]) -> list[range]:
    """Split a batch where a (type, id) repeats, so each round sees earlier writes of the same resource."""
    out: list[range] = []
    start, seen = 0, set[tuple[str, str]]()
    for i, key in enumerate(keys):
        if key in seen:
            out.append(range(start, i))
            start, seen = i, set[tuple[str, str]]()
        seen.add(key)
    out.append(range(start, len(keys)))
    return out
