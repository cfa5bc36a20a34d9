"""RowScope: the rows of patient data a principal may see beyond its scopes, for views, reports and SQL.

Scopes decide which resource types and which compartment; governance (policy file, consent, labels,
care team) narrows further by patient and by label. Searches apply the same rules per resource
(service.guard); tabular paths cannot inspect each resource, so they get this summary and filter rows:
- `only_patients`: a care-team role sees the rows of these patients only (None: no such limit);
- `excluded_patients`: patients removed entirely (an active OPTOUT consent, or a consent denying the
  whole record to this principal);
- `excluded_types`: per resource type, patients whose rows of that type a consent denies;
- `withheld_labels`: security label codes (meta.security) whose resources are withheld;
- `optout_patients`: the opted-out patients (a subset of `excluded_patients`), so derived aggregate
  tables that already leave them out (appointment_daily) can still serve the principal;
- `allowed_types` and `fields`: the role's resource types (None: all) and field projections, so a view
  over a type the role may not see is not offered and columns of elements it may not see are hidden.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from fhirgate.core.policy.rules import FieldRule


@dataclass(frozen=True, slots=True)
class RowScope:
    """Row-level limits for one principal (the default: none)."""

    only_patients: frozenset[str] | None = None
    excluded_patients: frozenset[str] = frozenset()
    excluded_types: Mapping[str, frozenset[str]] = field(default_factory=dict)
    withheld_labels: frozenset[str] = frozenset()
    optout_patients: frozenset[str] = frozenset()
    allowed_types: frozenset[str] | None = None
    fields: Mapping[str, FieldRule] = field(default_factory=dict)

    def field_rule(self, resource_type: str) -> FieldRule | None:
        """The role's projection for the type (its own rule, else the `*` rule), or None."""
        return self.fields.get(resource_type) or self.fields.get("*")

    def type_allowed(self, resource_type: str) -> bool:
        """Whether the role may see the resource type at all."""
        return self.allowed_types is None or resource_type in self.allowed_types

    @property
    def unrestricted(self) -> bool:
        """True when no row is excluded for governance reasons."""
        return (
            self.only_patients is None
            and not self.excluded_patients
            and not any(self.excluded_types.values())
            and not self.withheld_labels
        )

    def excluded_for(self, resource_type: str) -> frozenset[str]:
        """Patients none of whose rows of `resource_type` may be seen."""
        return self.excluded_patients | self.excluded_types.get(resource_type, frozenset())

    def patient_visible(self, patient: str, resource_type: str | None = None) -> bool:
        """Whether rows of `patient` (of `resource_type`, when given) may be seen at all."""
        if self.only_patients is not None and patient not in self.only_patients:
            return False
        if patient in self.excluded_patients:
            return False
        return resource_type is None or patient not in self.excluded_types.get(resource_type, frozenset())

    def only_optouts_excluded(self, resource_type: str) -> bool:
        """True when the only rows excluded for `resource_type` are the opted-out patients' (no labels or care team)."""
        return (
            self.only_patients is None
            and not self.withheld_labels
            and self.excluded_for(resource_type) == self.optout_patients
        )
