"""`code:below` on ICD-10-CM for search_resources: a token `:below` value is rewritten, before the search is
parsed, into the plain parameter with an OR-list of the code and every code below it in the CMS hierarchy.

FHIR R4 §3.1.1.5.5 (`:below` on tokens: subsumption in the code system's hierarchy). Only ICD-10-CM's hierarchy
is known here (fhirgate.terminology.icd10cm), so other systems are refused rather than matched by spelling.
Rules:
- a value `http://hl7.org/fhir/sid/icd-10-cm|E11` or a bare `E11` (read as ICD-10-CM: the result names the
  system) becomes `code=<system>|E11,<system>|E11.0,...` in the dotted form FHIR uses for ICD-10-CM codes;
  a comma list ORs several codes;
- when the list would exceed MAX_EXPANDED codes (S72 has 2,659), the parameter stays `:below` with the
  normalized `system|code`, which the store matches as a code prefix: for ICD-10-CM categories and
  subcategories the codes that begin with a code are exactly its descendants, so the result is the same;
- an unknown or malformed code, or another system, is InvalidInput naming `params.<name>:below`.
"""

from __future__ import annotations

from collections.abc import Sequence

from fhirgate.core.fhir.definitions import search_param
from fhirgate.core.fhir.search_values import split_unescaped
from fhirgate.errors import InvalidInput
from fhirgate.terminology import icd10cm
from fhirgate.terminology.systems import ICD10CM

# Each OR-ed value is one SQL term; SQLite's expression depth limit is 1000 (SQLITE_MAX_EXPR_DEPTH).
MAX_EXPANDED = 500
_ALLOWED = f"{ICD10CM}|CODE or a bare ICD-10-CM code such as E11 (only the ICD-10-CM hierarchy is supported)"


def expand_code_below(resource_type: str, pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The search pairs with every token `<param>:below` rewritten as described in the module docstring."""
    out: list[tuple[str, str]] = []
    for name, value in pairs:
        code, _, modifier = name.partition(":")
        definition = search_param(resource_type, code) if modifier == "below" and code else None
        if definition is None or definition.type != "token":
            out.append((name, value))  # not a token :below: parse_search validates it as before
            continue
        out.append(_expand(f"params.{name}", code, value))
    return out


def _icd_code(key: str, part: str) -> str:
    system, bar, code = part.rpartition("|")
    if bar and system != ICD10CM:
        raise InvalidInput(key, "only the ICD-10-CM hierarchy is supported for :below on codes", _ALLOWED)
    found = icd10cm.normalize(code)
    if found is None:
        raise InvalidInput(key, "not an ICD-10-CM code", _ALLOWED)
    return found


def _expand(key: str, param: str, value: str) -> tuple[str, str]:
    parts = split_unescaped(value, ",")
    if not parts or any(not p.strip() for p in parts):
        raise InvalidInput(key, "empty value in comma-separated list", _ALLOWED)
    roots = list(dict.fromkeys(_icd_code(key, p.strip()) for p in parts))
    expanded: dict[str, None] = {}
    for root in roots:
        expanded.update(dict.fromkeys(icd10cm.expand_below(root, key)))
        if len(expanded) > MAX_EXPANDED:
            # Same matches as the list: a descendant's dotted code begins with its ancestor's code.
            return f"{param}:below", ",".join(f"{ICD10CM}|{r}" for r in roots)
    return param, ",".join(f"{ICD10CM}|{c}" for c in expanded)
