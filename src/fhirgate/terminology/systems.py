"""The code systems lookup_code knows, their canonical FHIR URIs and short aliases.

URIs are the FHIR R4 terminology identifiers (http://hl7.org/fhir/R4/terminologies-systems.html).
"""

from __future__ import annotations

from fhirgate.errors import InvalidInput

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"

# alias -> canonical URI, in the order they are listed to callers.
SYSTEMS: dict[str, str] = {
    "icd10cm": ICD10CM,
    "snomed": SNOMED,
    "loinc": LOINC,
    "rxnorm": RXNORM,
    "cvx": CVX,
}
_BY_URI = {uri: uri for uri in SYSTEMS.values()}
_ALIASES = {**SYSTEMS, "icd-10-cm": ICD10CM, "icd10": ICD10CM, "sct": SNOMED, "snomed-ct": SNOMED}
ALLOWED_TEXT = ", ".join([*SYSTEMS, *SYSTEMS.values()])


def resolve_system(value: str | None, param: str = "system") -> str | None:
    """The canonical URI for a system URI or alias (None stays None); InvalidInput naming `param` otherwise."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(param, "must be a code system URI or alias", ALLOWED_TEXT)
    text = value.strip()
    found = _BY_URI.get(text.rstrip("/")) or _ALIASES.get(text.lower())
    if found is None:
        raise InvalidInput(param, "unknown code system", ALLOWED_TEXT)
    return found


def alias_of(uri: str) -> str:
    """The short alias of a canonical URI (the URI itself when it has none)."""
    for alias, known in SYSTEMS.items():
        if known == uri:
            return alias
    return uri
