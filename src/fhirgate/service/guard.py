"""The policy gate every use case passes through: plan a query, then re-check each resource out.

`plan_access` narrows a query before it runs; `authorize_resource` is applied to EVERY resource that
would leave the server (matches, includes, everything pages, grep hits, reads, summaries), so a store
or plan bug can never leak a resource (SMART App Launch 2.x, "Scopes for requesting clinical data").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fhirgate.core.fhir.extract import extract
from fhirgate.core.policy.access import AccessPlan, authorize_resource, plan_access
from fhirgate.core.policy.decision import Decision
from fhirgate.core.policy.principal import Principal
from fhirgate.errors import AccessDenied
from fhirgate.store.contract import StoredResource


@dataclass(frozen=True, slots=True)
class Admitted:
    """A resource the principal may receive, with the patients whose compartment holds it."""

    stored: StoredResource
    patients: tuple[str, ...]

    @property
    def ref(self) -> str:
        return self.stored.ref


class Guard:
    """Policy checks for one principal: type-level plans and per-resource authorization."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal

    def plan(self, resource_type: str, interaction: str) -> AccessPlan:
        """The access plan for a type, raising AccessDenied (naming the scope needed) when unreachable."""
        plan = plan_access(self.principal, resource_type, interaction)
        if not plan.allowed:
            raise _denied(plan.decision)
        return plan

    def may(self, resource_type: str, interaction: str) -> bool:
        """True when the type is reachable at all for this interaction."""
        return plan_access(self.principal, resource_type, interaction).allowed

    def check(self, stored: StoredResource, interaction: str) -> tuple[Decision, tuple[str, ...]]:
        """Authorize one resource; returns the decision and the patients whose compartment holds it."""
        rows = extract(stored.body)
        patients = tuple(rows.patients)
        if stored.resource_type == "Patient" and stored.id not in patients:
            # A Patient is always in its own compartment (FHIR R4 CompartmentDefinition/patient).
            rows.patients.append(stored.id)
            patients = (*patients, stored.id)
        return authorize_resource(self.principal, stored.resource_type, rows, interaction), patients

    def admit(self, stored: StoredResource, interaction: str) -> Admitted | None:
        """The resource when the principal may receive it, else None."""
        decision, patients = self.check(stored, interaction)
        return Admitted(stored, patients) if decision.allowed else None

    def admit_all(self, resources: Iterable[StoredResource], interaction: str) -> tuple[list[Admitted], int]:
        """The admitted resources in order, and how many were withheld."""
        out: list[Admitted] = []
        withheld = 0
        for stored in resources:
            admitted = self.admit(stored, interaction)
            if admitted is None:
                withheld += 1
            else:
                out.append(admitted)
        return out, withheld


def _denied(decision: Decision) -> AccessDenied:
    scope = decision.scope
    message = decision.detail or "Access denied by scope policy."
    if scope:
        message += f" Required scope: {scope}."
    return AccessDenied(message, reason=decision.reason, required_scope=scope)
