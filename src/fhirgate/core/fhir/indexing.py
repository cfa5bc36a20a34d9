"""The search-index rows extracted from one resource: the shape every store backend writes.

Extraction (core.fhir.extract) is pure and backend-neutral; a store only persists these rows and
queries them. Dates are epoch seconds (UTC) as inclusive [low, high] ranges, because a FHIR date
such as "2020-03" denotes an interval (FHIR R4 §3.1.1.4.5 "date", search on ranges).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# (param, system, code)
TokenRow = tuple[str, str | None, str | None]
# (param, normalized text) for token :text (CodeableConcept.text / Coding.display)
TokenTextRow = tuple[str, str]
# (param, normalized value, exact value) - normalized = casefolded, accents stripped (FHIR §3.1.1.4.7 string)
StringRow = tuple[str, str, str]
# (param, low epoch seconds, high epoch seconds), both inclusive
DateRow = tuple[str, float, float]
# (param, target type or None, target id or None, reference/canonical as written)
ReferenceRow = tuple[str, str | None, str | None, str]
# (param, value, system, code) - code is Quantity.code, or Quantity.unit when no code
QuantityRow = tuple[str, float, str | None, str | None]
# (param, value)
NumberRow = tuple[str, float]
# (param, uri)
UriRow = tuple[str, str]


@dataclass(slots=True)
class IndexRows:
    """All index rows for one resource, plus the patients whose compartment holds it."""

    token: list[TokenRow] = field(default_factory=list)
    token_text: list[TokenTextRow] = field(default_factory=list)
    string: list[StringRow] = field(default_factory=list)
    date: list[DateRow] = field(default_factory=list)
    reference: list[ReferenceRow] = field(default_factory=list)
    quantity: list[QuantityRow] = field(default_factory=list)
    number: list[NumberRow] = field(default_factory=list)
    uri: list[UriRow] = field(default_factory=list)
    # Patient ids whose compartment (CompartmentDefinition/patient, FHIR R4 §3.2.0) holds this resource.
    patients: list[str] = field(default_factory=list)
