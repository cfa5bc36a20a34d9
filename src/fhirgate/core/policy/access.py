"""The access policy: which resources a principal may read or search, decided with reasons.

Two entry points. `plan_access` runs before a query and says whether the type is reachable at all,
and if so within which patient compartment and under which SMART v2 constraints; the store uses the
plan to narrow the query. `authorize_resource` runs on EVERY resource about to leave the server
(search matches, `_include`/`_revinclude` results, reads) and re-checks it against the principal's
scopes one by one, so a plan bug or an include can never leak a resource.

Rules (SMART App Launch 2.x, "Scopes for requesting clinical data"):
- `patient/` scopes reach only the compartment of the patient in context (token claim `patient`);
  a `patient/` grant without that claim grants nothing (reason `context.no_patient`).
- `user/` and `system/` scopes reach the whole practice for now. HOOK: care-team limits for
  `user/` principals belong in `_wide_compartment` (a later issue). A `user/` or `system/` principal
  whose `fhirUser` is `Patient/x` is confined to compartment x (fail closed).
- v2 constraints (`?category=...`): OR across scopes, AND across one scope's parameters; an
  unconstrained grant wins. Only TOKEN search parameters are supported as constraints
  (`code`, `system|code`, `system|`, `|code`, comma = OR); anything else fails closed with
  reason `constraint.unsupported`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from fhirgate.core.fhir.indexing import IndexRows
from fhirgate.core.policy.decision import Decision
from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.scopes import INTERACTIONS, Scope
from fhirgate.errors import InvalidInput

Constraint = tuple[tuple[str, str], ...]

_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}")
_INTERACTION_WORDS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}


@dataclass(frozen=True, slots=True)
class AccessPlan:
    """How a query for one type must be narrowed.

    `compartment` is the patient id whose compartment bounds the query, or None for practice-wide.
    `constraint_sets` is empty when unconstrained; otherwise a resource must match ALL pairs of at
    least ONE set. Only meaningful when `decision.allowed`.
    """

    decision: Decision
    compartment: str | None = None
    constraint_sets: tuple[Constraint, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.decision.allowed

    @property
    def unconstrained(self) -> bool:
        return not self.constraint_sets


def _check_args(resource_type: str, interaction: str) -> None:
    if not isinstance(resource_type, str) or not _RESOURCE_TYPE.fullmatch(resource_type):
        raise InvalidInput("resource_type", "must be a FHIR resource type name", "e.g. Observation")
    if interaction not in INTERACTIONS:
        raise InvalidInput("interaction", f"{interaction!r} is not an interaction letter", "c, r, u, d, s")


def _patient_of_fhir_user(principal: Principal) -> str | None:
    """The patient id when the principal's fhirUser is a Patient, else None."""
    user = principal.fhir_user or ""
    kind, _, ident = user.partition("/")
    return ident if kind == "Patient" and ident else None


def _wide_compartment(principal: Principal) -> str | None:
    """The compartment a user/ or system/ grant is confined to (None = practice-wide).

    HOOK for care-team limits: a later issue narrows `user/` principals here.
    """
    return _patient_of_fhir_user(principal)


def _letters_for_hint(interaction: str) -> str:
    return "rs" if interaction in ("r", "s") else interaction


def required_scope_hint(principal: Principal, resource_type: str, interaction: str) -> str:
    """The scope the principal would need, in the context it already uses (for 403 responses)."""
    scopes = principal.scopes
    if scopes.has_context("system") and not scopes.has_context("user"):
        context = "system"
    elif scopes.has_context("user"):
        context = "user"
    elif scopes.has_context("patient") or principal.patient is not None:
        context = "patient"
    else:
        context = "user"
    return f"{context}/{resource_type}.{_letters_for_hint(interaction)}"


def _dedupe(sets: list[Constraint]) -> tuple[Constraint, ...]:
    return tuple(dict.fromkeys(sets))


def plan_access(principal: Principal, resource_type: str, interaction: Literal["r", "s"] | str) -> AccessPlan:
    """Decide whether `interaction` on `resource_type` is reachable and how to narrow the query."""
    _check_args(resource_type, interaction)
    word = _INTERACTION_WORDS[interaction]
    granting = principal.scopes.granting(resource_type, interaction)
    if not granting:
        hint = required_scope_hint(principal, resource_type, interaction)
        return AccessPlan(Decision.deny("scope.missing", f"No granted scope allows {word} on {resource_type}.", hint))
    wide = [s for s in granting if s.context != "patient"]
    if wide:
        # A user/ or system/ grant is used alone: mixing it with patient/ grants cannot be expressed
        # as one compartment, and using the wide grants only never grants more than they allow.
        chosen, compartment = wide, _wide_compartment(principal)
        reason = "scope.granted" if compartment is None else "scope.granted.fhiruser_patient"
    else:
        if not principal.patient:
            return AccessPlan(
                Decision.deny(
                    "context.no_patient",
                    f"A patient/ scope grants {word} on {resource_type} but the token has no patient in context.",
                    f"launch/patient patient/{resource_type}.{_letters_for_hint(interaction)}",
                )
            )
        chosen, compartment = list(granting), principal.patient
        reason = "scope.granted"
    if any(not s.constraints for s in chosen):
        first = next(s for s in chosen if not s.constraints)
        constraint_sets: tuple[Constraint, ...] = ()
    else:
        first = chosen[0]
        constraint_sets = _dedupe([s.constraints for s in chosen])
    where = "practice-wide" if compartment is None else f"in the compartment of Patient/{compartment}"
    detail = f"{word.capitalize()} on {resource_type} allowed {where}."
    return AccessPlan(Decision.allow(reason, detail, first.raw), compartment, constraint_sets)


def _split_values(value: str) -> list[str]:
    """Split a token search value on unescaped commas (FHIR R4 §3.1.1.4.1: comma = OR)."""
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for ch in value:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _token_matches(rows: IndexRows, param: str, value: str) -> bool:
    """FHIR token matching (R4 §3.1.1.4.3 "token") of one constraint against the resource's rows."""
    for wanted in _split_values(value):
        for name, system, code in rows.token:
            if name != param:
                continue
            if "|" not in wanted:
                if code == wanted:
                    return True
                continue
            want_system, _, want_code = wanted.partition("|")
            if want_system == "":
                if not system and code == want_code:
                    return True
            elif want_code == "":
                if system == want_system:
                    return True
            elif system == want_system and code == want_code:
                return True
    return False


def _non_token_params(rows: IndexRows) -> set[str]:
    names: set[str] = set()
    for group in (rows.string, rows.date, rows.reference, rows.quantity, rows.number, rows.uri):
        names.update(row[0] for row in group)
    return names - {row[0] for row in rows.token}


def _constraint_outcome(scope: Scope, rows: IndexRows) -> str | None:
    """None when the resource meets every constraint of the scope, else the failure reason."""
    non_token = _non_token_params(rows) if scope.constraints else set()
    for param, value in scope.constraints:
        if ":" in param or param in non_token:
            return "constraint.unsupported"
        if not _token_matches(rows, param, value):
            return "constraint.unmatched"
    return None


def _scope_compartment(principal: Principal, scope: Scope) -> tuple[bool, str | None]:
    """(usable, compartment) for one scope: patient/ needs a patient claim."""
    if scope.context == "patient":
        return (principal.patient is not None and principal.patient != ""), principal.patient
    return True, _wide_compartment(principal)


def authorize_resource(principal: Principal, resource_type: str, rows: IndexRows, interaction: str) -> Decision:
    """Check one resource about to leave the server against every granting scope; allow if any admits it.

    `rows.patients` must list the patients whose compartment holds the resource (a Patient's own id
    included). Failure reasons, most specific last seen wins: `scope.missing`, `context.no_patient`,
    `compartment.outside`, `constraint.unmatched`, `constraint.unsupported`.
    """
    _check_args(resource_type, interaction)
    word = _INTERACTION_WORDS[interaction]
    granting = principal.scopes.granting(resource_type, interaction)
    hint = required_scope_hint(principal, resource_type, interaction)
    if not granting:
        return Decision.deny("scope.missing", f"No granted scope allows {word} on {resource_type}.", hint)
    failure = "context.no_patient"
    for scope in granting:
        usable, compartment = _scope_compartment(principal, scope)
        if not usable:
            continue
        if compartment is not None and compartment not in rows.patients:
            failure = _worse(failure, "compartment.outside")
            continue
        outcome = _constraint_outcome(scope, rows)
        if outcome is not None:
            failure = _worse(failure, outcome)
            continue
        where = "practice-wide" if compartment is None else f"in the compartment of Patient/{compartment}"
        return Decision.allow("scope.granted", f"{resource_type} {word} allowed {where}.", scope.raw)
    return Decision.deny(failure, _FAILURE_DETAIL[failure].format(type=resource_type, word=word), hint)


_FAILURE_ORDER = ("context.no_patient", "compartment.outside", "constraint.unmatched", "constraint.unsupported")
_FAILURE_DETAIL = {
    "context.no_patient": "A patient/ scope covers {type} but the token has no patient in context.",
    "compartment.outside": "This {type} is outside the patient compartment the token may {word}.",
    "constraint.unmatched": "This {type} does not meet the constraints of the granted scopes.",
    "constraint.unsupported": "A granted scope constrains {type} by a parameter that is not a token "
    "search parameter; only token constraints are supported.",
}


def _worse(current: str, new: str) -> str:
    """Report the refusal that got furthest through the checks (most informative)."""
    return new if _FAILURE_ORDER.index(new) > _FAILURE_ORDER.index(current) else current
