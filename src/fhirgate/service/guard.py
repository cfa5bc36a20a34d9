"""The policy gate every use case passes through: plan a query, then re-check each resource out.

`plan_access` narrows a query before it runs; `authorize_resource` is applied to EVERY resource that
would leave the server (matches, includes, everything pages, grep hits, reads, summaries), so a store
or plan bug can never leak a resource (SMART App Launch 2.x, "Scopes for requesting clinical data").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from fhirgate.core.fhir.extract import extract
from fhirgate.core.policy.access import AccessPlan, authorize_resource, plan_access
from fhirgate.core.policy.decision import Decision
from fhirgate.core.policy.labels import WithheldTally
from fhirgate.core.policy.principal import Principal
from fhirgate.errors import AccessDenied
from fhirgate.service.governance import Standing
from fhirgate.service.record_text import NOTICE, TextFindings, flag_stored_attachments, guard_text
from fhirgate.service.shaping import shape
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
    """Policy checks for one principal: scope plans and per-resource authorization, then governance.

    With a Standing (service.governance), every resource that passes the scopes is also screened by role,
    labels, Consent and care team; what governance withholds is counted by category (`withheld`), and
    elements a role's projection drops are listed by type (`omitted`), so results can say so.
    """

    def __init__(self, principal: Principal, standing: Standing | None = None) -> None:
        self.principal = principal
        self.standing = standing
        self.withheld = WithheldTally()
        self.omitted: dict[str, set[str]] = {}
        self.text = TextFindings()

    def plan(self, resource_type: str, interaction: str) -> AccessPlan:
        """The access plan for a type, raising AccessDenied (naming the scope needed) when unreachable."""
        plan = plan_access(self.principal, resource_type, interaction)
        if not plan.allowed:
            raise _denied(plan.decision)
        if self.standing is not None:
            decision = self.standing.check_type(resource_type)
            if not decision.allowed:
                raise _denied(decision)
        return plan

    def may(self, resource_type: str, interaction: str) -> bool:
        """True when the type is reachable at all for this interaction."""
        if self.standing is not None and not self.standing.check_type(resource_type).allowed:
            return False
        return plan_access(self.principal, resource_type, interaction).allowed

    def _check(self, stored: StoredResource, interaction: str) -> tuple[Decision, tuple[str, ...], bool]:
        rows = extract(stored.body)
        patients = tuple(rows.patients)
        if stored.resource_type == "Patient" and stored.id not in patients:
            # A Patient is always in its own compartment (FHIR R4 CompartmentDefinition/patient).
            rows.patients.append(stored.id)
            patients = (*patients, stored.id)
        decision = authorize_resource(self.principal, stored.resource_type, rows, interaction)
        if not decision.allowed or self.standing is None:
            return decision, patients, False
        return self.standing.screen(stored.resource_type, stored.body, patients), patients, True

    def check(self, stored: StoredResource, interaction: str) -> tuple[Decision, tuple[str, ...]]:
        """Authorize one resource; returns the decision and the patients whose compartment holds it."""
        decision, patients, _ = self._check(stored, interaction)
        return decision, patients

    def admit(self, stored: StoredResource, interaction: str) -> Admitted | None:
        """The resource when the principal may receive it, else None (a governance refusal is counted)."""
        decision, patients, governed = self._check(stored, interaction)
        if decision.allowed:
            return Admitted(stored, patients)
        if governed:
            self.withheld.add_decision(decision)
        return None

    def admit_all(self, resources: Iterable[StoredResource], interaction: str) -> tuple[list[Admitted], int]:
        """The admitted resources in order, and how many were withheld (by scopes or governance)."""
        out: list[Admitted] = []
        withheld = 0
        for stored in resources:
            admitted = self.admit(stored, interaction)
            if admitted is None:
                withheld += 1
            else:
                out.append(admitted)
        return out, withheld

    def project(self, stored: StoredResource) -> StoredResource:
        """The resource with only the elements the role's projection keeps (minimum necessary, 164.502(b))."""
        rule = self.standing.role.field_rule(stored.resource_type) if self.standing is not None else None
        if rule is None:
            return stored
        body, dropped = rule.apply(stored.body)
        if not dropped:
            return stored
        self.omitted.setdefault(stored.resource_type, set()).update(dropped)
        return replace(stored, body=body)

    def present(
        self, stored: StoredResource, fmt: str, elements: tuple[str, ...] = (), summary: str | None = None
    ) -> dict[str, Any]:
        """One resource as it leaves: projected for the role, shaped, its free text fenced (record_text)."""
        out = shape(self.project(stored), fmt, elements, summary)
        fenced: dict[str, Any] = guard_text(out, stored.ref, self.text)
        flag_stored_attachments(stored.ref, stored.resource_type, stored.body, self.text)
        return fenced

    def notes(self) -> dict[str, Any]:
        """What governance held back in this result, for the caller (empty when nothing was)."""
        out: dict[str, Any] = {}
        if self.withheld:
            out["withheld"] = {
                "count": self.withheld.total,
                "by_category": self.withheld.counts(),
                "note": self.withheld.sentence()
                + ". Withheld items are not shown and are not in totals; categories say why (sensitivity: "
                "security labels your role may not see; consent: the patient's Consent; care-team: patients "
                "you have no care relationship with).",
            }
        if self.text.fenced or self.text.flagged:
            out["untrusted_text"] = NOTICE
        if self.text.flagged:
            out["flagged_text"] = self.text.flagged
        if self.omitted and self.standing is not None:
            out["omitted_elements"] = {
                "by_type": {t: sorted(names) for t, names in sorted(self.omitted.items())},
                "note": f"Elements left out as not necessary for role {self.standing.role.name} (minimum "
                "necessary, 45 CFR 164.502(b)); they exist but your role does not receive them.",
            }
        return out


def _denied(decision: Decision) -> AccessDenied:
    scope = decision.scope
    message = decision.detail or "Access denied by scope policy."
    if scope:
        message += f" Required scope: {scope}."
    return AccessDenied(message, reason=decision.reason, required_scope=scope)
