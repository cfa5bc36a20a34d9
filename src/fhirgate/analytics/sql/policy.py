"""Which views a principal may query with SQL, and which rows of each: pure decisions with reasons.

A view is offered when the principal may SEARCH the view's FHIR resource type (`plan_access(..., 's')`,
SMART App Launch 2.x "Scopes for requesting clinical data"). Rows are then narrowed like a search:
- practice-wide grant (user/ or system/ scope, fhirUser not a Patient): every row;
- grant confined to one patient's compartment (patient/ scope with launch context, or a fhirUser that
  is a Patient): only rows whose patient column is that patient (FHIR R4 CompartmentDefinition/patient);
  a view without such a column is not offered (fail closed: e.g. `practitioner` for a patient token,
  matching a patient-compartment search of Practitioner, which returns nothing);
- grant narrowed by SMART v2 constraints (`?category=...`): the view is not offered, since a view row
  cannot be tested against a search-parameter constraint; search_resources honours such scopes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from fhirgate.analytics.sql.catalog import ViewInfo
from fhirgate.core.policy.access import plan_access
from fhirgate.core.policy.principal import Principal
from fhirgate.errors import InvalidInput

# FHIR R4 §2.24.0.1 "id": the only shape of patient id ever inlined into SQL.
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_PATIENT_KEY = "getReferenceKey(Patient)"
_RESOURCE_KEY = ("getResourceKey()", "id")


@dataclass(frozen=True, slots=True)
class RowFilter:
    """The rows of a view a principal sees: all (`column` None) or those whose `column` equals `patient`."""

    column: str | None = None
    patient: str | None = None

    def where(self) -> str:
        """The SQL WHERE condition of the filter ('' for all rows); the id is a validated FHIR id."""
        if self.column is None or self.patient is None:
            return ""
        if not FHIR_ID.fullmatch(self.patient):  # checked when built; re-checked before inlining
            raise InvalidInput("patient", "not a FHIR id", "[A-Za-z0-9-.]{1,64}")
        return f"\"{self.column}\" = '{self.patient}'"

    def describe(self) -> str:
        """The restriction in words, for describe_view."""
        if self.column is None:
            return "none: every row of the practice"
        return f"only rows where {self.column} = '{self.patient}' (your access is confined to Patient/{self.patient})"


@dataclass(frozen=True, slots=True)
class ViewGrant:
    """The decision for one view: offered or not, why, and the row filter when offered."""

    view: str
    allowed: bool
    reason: str
    detail: str
    required_scope: str | None = None
    rows: RowFilter | None = None

    @property
    def patient(self) -> str | None:
        """The single patient the rows are confined to, or None."""
        return self.rows.patient if self.rows is not None else None


def _patient_column(info: ViewInfo) -> str | None:
    """The column holding the patient a row belongs to (its own id for a Patient view), or None."""
    if info.resource_type == "Patient":
        for col in info.columns:
            if col.path in _RESOURCE_KEY and not col.collection:
                return col.name
        return None
    found = info.column("patient_id")
    if found is not None and _PATIENT_KEY in found.path and not found.collection:
        return found.name
    return None


def grant_view(principal: Principal, info: ViewInfo) -> ViewGrant:
    """Decide whether `principal` may query `info`, and which rows."""
    try:
        plan = plan_access(principal, info.resource_type, "s")
    except InvalidInput:
        return ViewGrant(info.name, False, "view.unsupported_type", f"View {info.name} reads an unsupported type.")
    rtype = info.resource_type
    if not plan.allowed:
        detail = f"View {info.name} needs search access to {rtype}: {plan.decision.detail}"
        return ViewGrant(info.name, False, plan.decision.reason, detail, plan.decision.scope)
    for other in info.also_reads:  # a derived view needs access to every type its rows summarize
        more = plan_access(principal, other, "s")
        if not more.allowed:
            detail = f"View {info.name} summarizes {other}: {more.decision.detail}"
            return ViewGrant(info.name, False, more.decision.reason, detail, more.decision.scope)
        if not more.unconstrained or more.compartment != plan.compartment:
            detail = f"Your scope for {other} is narrowed, so view {info.name} that summarizes it is not offered."
            return ViewGrant(info.name, False, "constraint.unsupported_in_sql", detail, None)
    if not plan.unconstrained:
        detail = (
            f"Your scope for {rtype} is narrowed by SMART v2 constraints, which SQL views cannot apply; "
            f"use search_resources for {rtype}."
        )
        return ViewGrant(info.name, False, "constraint.unsupported_in_sql", detail, None)
    if plan.compartment is None:
        detail = f"All rows (search on {rtype} allowed practice-wide)."
        return ViewGrant(info.name, True, "scope.granted", detail, plan.decision.scope, RowFilter())
    patient = plan.compartment
    if not FHIR_ID.fullmatch(patient):
        return ViewGrant(info.name, False, "context.invalid_patient", "The patient in context is not a FHIR id.")
    column = _patient_column(info)
    if column is None:
        detail = (
            f"Your access is confined to Patient/{patient} and view {info.name} has no patient column "
            "to confine its rows by."
        )
        return ViewGrant(info.name, False, "compartment.not_in_view", detail, None)
    detail = f"Rows of Patient/{patient} only (your access is confined to that patient's compartment)."
    return ViewGrant(info.name, True, "scope.granted", detail, plan.decision.scope, RowFilter(column, patient))


def grant_views(principal: Principal, catalog: Mapping[str, ViewInfo]) -> dict[str, ViewGrant]:
    """The decision for every view in the catalog, by view name."""
    return {name: grant_view(principal, info) for name, info in catalog.items()}


def confined_patients(grants: Mapping[str, ViewGrant], views: set[str] | frozenset[str]) -> list[str]:
    """The patients whose rows `views` were confined to (for the audit record), sorted."""
    return sorted({g.patient for name, g in grants.items() if name in views and g.patient is not None})
