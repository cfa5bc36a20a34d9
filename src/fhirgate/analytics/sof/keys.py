"""getResourceKey() and getReferenceKey([type]) (SQL on FHIR v2 "Required additional functions").

The key of a resource is its logical id; the key of a reference is the id part of `Reference.reference`, so the
two join. A typed call returns nothing when the reference points at another type.
"""

from __future__ import annotations

import re
from typing import Any

# Relative `Type/id`, absolute `http://base/Type/id`, either with an optional `/_history/vid` (FHIR R4 §2.3.0.1).
_LITERAL_RE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")
_RELATIVE_RE = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})")
_URN_PREFIXES = ("urn:uuid:", "urn:oid:")


def resource_key(resource: Any) -> str | None:
    """The key of a resource: its id, or None without one."""
    if isinstance(resource, dict):
        rid = resource.get("id")
        if isinstance(rid, str):
            return rid
    return None


def reference_key(reference: Any, type_name: str | None = None) -> str | None:
    """The key a Reference points at, or None (contained, conditional, logical-only, or another type).

    A `urn:uuid:` reference carries no type; it matches a typed call unless `Reference.type` names another type.
    """
    if reference.__class__ is not dict:
        return None
    ref = reference.get("reference")
    if ref.__class__ is not str:
        return None
    match = _RELATIVE_RE.fullmatch(ref)  # the common case, one C call
    if match is None:
        if not ref or ref.startswith("#"):
            return None
        for prefix in _URN_PREFIXES:
            if ref.startswith(prefix):
                declared = reference.get("type")
                if type_name is not None and isinstance(declared, str) and declared != type_name:
                    return None
                return ref[len(prefix) :] or None
        match = _LITERAL_RE.search(ref)
        if match is None:
            return None
    if type_name is not None and match.group(1) != type_name:
        return None
    return match.group(2)
