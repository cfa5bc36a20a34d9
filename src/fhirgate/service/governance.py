"""Governance: the policy file, Consents, security labels and care-team relationships, applied per request.

Scopes (core.policy.access) say which types and which compartment a token reaches; governance narrows
that to the minimum necessary (HIPAA 45 CFR 164.502(b)) for the principal's role:
- the role: from the token's role claim, its fhirUser or the policy's default (core.policy.rules);
- the purpose of use: the token's, which the role must allow, else the role's default;
- the role's resource types and tools;
- security labels (meta.security, REFERENCE §5): sensitive ones withheld unless the role may see them
  for this purpose, or break-glass is active and the role's break-glass labels include them;
- Consent (FHIR R4 Consent): an opted-out patient is out of AI access entirely; deny provisions withhold
  what they cover. Break-glass never lifts a Consent: a patient who refused AI access refused it for
  emergencies too, and the clinician still has the record itself (42 CFR 2.51 permits disclosure to
  treating personnel, it does not require an AI route to it);
- care team: a `care-team` role sees patients linked to its fhirUser (appointment or encounter
  participant, CareTeam member, general practitioner) unless break-glass is active.
Every decision carries its reason; refused items are counted by category, never silently dropped.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from fhirgate.core.fhir.definitions import SUPPORTED_TYPES
from fhirgate.core.policy.consent import ConsentQuery, ConsentSet
from fhirgate.core.policy.decision import Decision
from fhirgate.core.policy.labels import label_decision, labels_of
from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.rowscope import RowScope
from fhirgate.core.policy.rules import WRITE_TOOLS, Policy, Role, WritePolicy
from fhirgate.errors import AccessDenied, InvalidInput, RateLimited
from fhirgate.ratelimit import BucketRule, RateLimiter, RateLimitRule, check, open_limiter
from fhirgate.shared_state.grants import GrantStore, open_grants
from fhirgate.store.contract import FhirStore

# Reference search parameters that make a care relationship with the referenced practitioner.
CARE_LINKS: tuple[tuple[str, str], ...] = (
    ("Appointment", "actor"),
    ("Encounter", "participant"),
    ("CareTeam", "participant"),
    ("Patient", "general-practitioner"),
)
CARE_TEAM_TTL_S = 30.0
CLIENT_FACTOR = 10  # a client's bucket holds this many times the policy's default rate
BREAK_GLASS_REASON_MIN = 10
_PRACTITIONER_TYPES = ("Practitioner", "PractitionerRole")
# Elements whose value dates a resource, for Consent provision.dataPeriod (first present wins).
_DATE_PATHS = (
    "effectiveDateTime", "effectivePeriod", "onsetDateTime", "onsetPeriod", "recordedDate", "authoredOn",
    "occurrenceDateTime", "performedDateTime", "performedPeriod", "issued", "date", "start", "period",
    "billablePeriod", "created",
)  # fmt: skip
_CODE_PATHS = ("code", "vaccineCode", "medicationCodeableConcept", "type", "serviceType")


# Tools whose output a de-identified role may receive: view metadata, de-identified SQL, code lookups.
DEIDENTIFIED_TOOLS = frozenset({"whoami", "list_views", "describe_view", "query_sql", "lookup_code"})


# The resource type each specific write tool writes; the generic ones (create_resource, update_resource,
# proposal_status) need any write type, and the type of each proposal is checked when it is made.
WRITE_TOOL_TYPES: Mapping[str, str] = MappingProxyType(
    {"book_appointment": "Appointment", "update_appointment": "Appointment", "add_clinical_note": "DocumentReference"}
)
_READ_ONLY = (
    "This server is read-only: write tools are off. An operator turns them on with `fhirgate serve "
    "--allow-writes` or `[writes] enabled = true` in the policy file."
)


def tool_decision(role: Role, tool: str, writes: WritePolicy | None = None) -> Decision:
    """Whether the role may call `tool`: its policy tool list, de-identified output only for a de-identified
    role, break_glass only for a role that may break the glass, write tools only when `writes` is enabled
    (None = off) and the role may write their type. The call check and tools/list both use it."""
    allowed = role.allows_tool(tool)
    if not allowed.allowed:
        return allowed
    if role.deidentify and tool not in DEIDENTIFIED_TOOLS:
        return Decision.deny(
            "deid.tool_not_deidentified",
            f"Role {role.name} receives de-identified data only, and {tool} returns identified records; use one "
            f"of: {', '.join(sorted(DEIDENTIFIED_TOOLS))}.",
        )
    if tool == "break_glass" and not role.break_glass:
        return Decision.deny("break_glass.not_allowed", f"Role {role.name} may not break the glass.")
    if tool in WRITE_TOOLS:
        return write_tool_decision(role, tool, writes or WritePolicy())
    return allowed


def write_tool_decision(role: Role, tool: str, writes: WritePolicy) -> Decision:
    """Whether the role may call the write tool `tool`: writes enabled, and a write type the tool needs."""
    if not writes.enabled:
        return Decision.deny("writes.disabled", _READ_ONLY)
    if not role.write_types:
        return Decision.deny(
            "writes.not_allowed_for_role",
            f"Role {role.name} may not propose writes (its policy write_types are empty); the server is "
            "read-only for it.",
        )
    needed = WRITE_TOOL_TYPES.get(tool)
    if needed is not None:
        decision = role.allows_write(needed, tool)
        if not decision.allowed:
            return decision
    allowed = ", ".join(sorted(role.write_types))
    return Decision.allow("writes.allowed", f"Role {role.name} may propose writes for: {allowed}.")


def _first_date(body: Mapping[str, Any]) -> dt.date | None:
    """The clinically relevant date of a resource (its first dating element), or None."""
    for name in _DATE_PATHS:
        value = body.get(name)
        if isinstance(value, Mapping):
            value = value.get("start")
        if isinstance(value, list):
            value = value[0] if value else None
            if isinstance(value, Mapping):
                value = value.get("start")
        if isinstance(value, str) and len(value) >= 10:
            try:
                return dt.date.fromisoformat(value[:10])
            except ValueError:
                return None
    return None


def _codes(body: Mapping[str, Any]) -> frozenset[str]:
    """`system|code` of the resource's principal codes (for Consent provision.code)."""
    out: set[str] = set()
    for name in _CODE_PATHS:
        value = body.get(name)
        for concept in value if isinstance(value, list) else [value]:
            if isinstance(concept, Mapping):
                for coding in concept.get("coding") or ():
                    if isinstance(coding, Mapping) and isinstance(coding.get("code"), str):
                        out.add(f"{coding.get('system') or ''}|{coding['code']}")
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class Standing:
    """One principal's standing under the policy for one request, and the per-resource screen."""

    role: Role
    purpose: str
    break_glass: bool
    sensitive: frozenset[str]
    visible_labels: frozenset[str]
    care_team: frozenset[str] | None
    consents: ConsentSet
    actor_refs: frozenset[str]
    today: dt.date

    def check_type(self, resource_type: str) -> Decision:
        """Whether the role may see the type at all."""
        return self.role.allows_type(resource_type)

    def patient_decision(self, patient: str) -> Decision:
        """Whether any data of `patient` may reach this principal (opt-out, care team); when allowed, the reason
        is the Consent gate's (`consent.rules`: the patient has Consents to evaluate per resource)."""
        out = self.consents.opted_out(patient, self.today)
        if not out.allowed:
            return out
        if self.care_team is not None and patient not in self.care_team:
            return Decision.deny(
                "careteam.outside",
                f"Patient/{patient} has no care relationship with you (appointment, encounter, care team or "
                "general practitioner); break_glass(reason) opens it for an emergency.",
            )
        return out

    def screen(self, resource_type: str, body: Mapping[str, Any], patients: Iterable[str]) -> Decision:
        """Whether one resource may leave: role type, every patient's consent and care team, its labels."""
        decision = self.check_type(resource_type)
        if not decision.allowed:
            return decision
        labels = labels_of(body)
        decision = label_decision(labels, self.sensitive, self.visible_labels)
        if not decision.allowed:
            return decision
        query: ConsentQuery | None = None
        for patient in patients:
            decision = self.patient_decision(patient)
            if not decision.allowed:
                return decision
            if decision.reason == "consent.rules":
                if query is None:
                    rid = body.get("id")
                    query = ConsentQuery(
                        resource_type=resource_type,
                        labels=labels,
                        resource_date=_first_date(body),
                        resource_ref=f"{resource_type}/{rid}" if isinstance(rid, str) and rid else None,
                        actor_refs=self.actor_refs,
                        purpose=self.purpose,
                        now=self.today,
                        codes=_codes(body),
                    )
                decision = self.consents.evaluate(patient, query)
                if not decision.allowed:
                    return decision
        return Decision.allow("governance.visible")

    def row_scope(self) -> RowScope:
        """The same rules for tabular paths (views, reports, SQL), where rows cannot be judged one by one.

        Opted-out patients are excluded. For a patient with narrower Consent rules, each resource type is
        judged as an unlabelled resource and as one carrying each sensitive label this principal may see;
        a type any of those would deny is excluded for that patient (dates and codes unknown count against
        access, so a dataPeriod or code provision excludes the whole type). Labels the principal may not
        see are withheld for everyone.
        """
        optouts = self.consents.patients_opted_out(self.today)
        excluded: dict[str, set[str]] = {}
        seen = sorted(self.visible_labels & self.sensitive)
        label_sets: list[frozenset[str]] = [frozenset(), *(frozenset({label}) for label in seen)]
        for patient in sorted(self.consents.patients_with_rules() - optouts):
            for rtype in SUPPORTED_TYPES:
                for labels in label_sets:
                    query = ConsentQuery(
                        resource_type=rtype,
                        labels=labels,
                        actor_refs=self.actor_refs,
                        purpose=self.purpose,
                        now=self.today,
                    )
                    if not self.consents.evaluate(patient, query).allowed:
                        excluded.setdefault(rtype, set()).add(patient)
                        break
        return RowScope(
            only_patients=self.care_team,
            excluded_patients=frozenset(optouts),
            excluded_types={t: frozenset(p) for t, p in excluded.items()},
            withheld_labels=frozenset(self.sensitive - self.visible_labels),
            optout_patients=frozenset(optouts),
            allowed_types=self.role.resource_types,
            fields=self.role.fields,
        )

    def describe(self) -> dict[str, Any]:
        """For whoami: role, purpose, what is withheld and whether break-glass is active (no PHI)."""
        return {
            "role": self.role.name,
            "access": self.role.access,
            "purpose_of_use": self.purpose,
            "break_glass": self.break_glass,
            "sensitive_labels_visible": sorted(self.visible_labels & self.sensitive),
            "sensitive_labels_withheld": sorted(self.sensitive - self.visible_labels),
            "care_team_patients": None if self.care_team is None else len(self.care_team),
            "de_identified": self.role.deidentify,
        }


class Governance:
    """The policy applied for a Gateway: builds each request's Standing; keeps break-glass grants and caches."""

    def __init__(
        self, policy: Policy, store: FhirStore, limiter: RateLimiter | None = None, grants: GrantStore | None = None
    ) -> None:
        """`limiter` (token buckets) and `grants` (break-glass): in-process, or Redis when the policy names a URL."""
        self.policy = policy
        self._store = store
        self.limiter = limiter if limiter is not None else open_limiter(policy.redis_url)
        self.grants = grants if grants is not None else open_grants(policy.redis_url)
        self._lock = threading.Lock()
        self._consents: tuple[str, ConsentSet] | None = None
        self._teams: dict[str, tuple[float, frozenset[str]]] = {}
        self._scopes: dict[tuple[Any, ...], RowScope] = {}

    # -- per request ---------------------------------------------------------------------------------

    def tool_decision(self, role: Role, tool: str) -> Decision:
        """tool_decision under this policy's [writes] (or `serve --allow-writes`): the call check and tools/list."""
        return tool_decision(role, tool, self.policy.writes)

    def role_of(self, principal: Principal) -> Role:
        """The principal's role, or AccessDenied naming why it could not be placed."""
        fhir_user_type = principal.fhir_user.split("/", 1)[0] if principal.fhir_user else None
        role, decision = self.policy.resolve_role(principal.role, fhir_user_type, principal.patient is not None)
        if role is None:
            raise AccessDenied(decision.detail or "No role in the policy fits this principal.", reason=decision.reason)
        return role

    def standing(self, principal: Principal, today: dt.date | None = None) -> Standing:
        """Role, purpose, break-glass, labels, care team and Consents for one request (AccessDenied if none fit)."""
        role = self.role_of(principal)
        glass = self.break_glass_active(principal) and role.break_glass
        requested = ("ETREAT",) if glass and "ETREAT" in role.purposes else tuple(principal.purpose_of_use)
        chosen = role.purpose_for(requested)
        if not chosen.allowed:
            raise AccessDenied(chosen.detail, reason=chosen.reason)
        purpose = requested[0] if requested else role.default_purpose
        care_team = None
        if role.access == "care-team" and not glass:
            care_team = self.care_team(principal)
        actors = {principal.fhir_user} if principal.fhir_user else set()
        return Standing(
            role=role,
            purpose=purpose,
            break_glass=glass,
            sensitive=self.policy.sensitive_labels,
            visible_labels=role.visible_labels(purpose, glass),
            care_team=care_team,
            consents=self.consents(),
            actor_refs=frozenset(actors),
            today=today or dt.date.today(),
        )

    def row_scope(self, standing: Standing) -> RowScope:
        """standing.row_scope(), cached per Consent state, purpose, actor, visible labels and day."""
        consents = self._consents[1] if self._consents is not None else None
        key = (
            id(consents),
            standing.role.name,
            standing.purpose,
            standing.actor_refs,
            standing.visible_labels,
            standing.today,
        )
        with self._lock:
            hit = self._scopes.get(key) if consents is standing.consents else None
        if hit is None:
            hit = replace(standing.row_scope(), only_patients=None)
            with self._lock:
                if len(self._scopes) > 256:
                    self._scopes.clear()
                self._scopes[key] = hit
        return replace(hit, only_patients=standing.care_team)

    # -- caches ----------------------------------------------------------------------------------------

    def consents(self) -> ConsentSet:
        """The practice's active privacy Consents, reloaded whenever a Consent is written or deleted."""
        mark = self._store.fingerprint("Consent")
        cached = self._consents
        if cached is not None and cached[0] == mark:
            return cached[1]
        found = ConsentSet.from_resources(s.body for s in self._store.iter_type("Consent"))
        self._consents = (mark, found)
        return found

    def care_team(self, principal: Principal) -> frozenset[str]:
        """Patients the principal's fhirUser has a care relationship with (cached for CARE_TEAM_TTL_S)."""
        user = principal.fhir_user
        if not user or user.split("/", 1)[0] not in _PRACTITIONER_TYPES:
            return frozenset()  # no practitioner identity: no care relationships to go by
        now = time.monotonic()
        with self._lock:
            hit = self._teams.get(user)
        if hit is not None and now - hit[0] < CARE_TEAM_TTL_S:
            return hit[1]
        team = self._store.linked_patients(user, CARE_LINKS)
        with self._lock:
            self._teams[user] = (now, team)
        return team

    # -- rate limits -----------------------------------------------------------------------------------

    def charge(self, principal: Principal, role: Role, tool: str) -> None:
        """Take the tool's cost from the principal's and the client's buckets; RateLimited when either is empty.

        The principal's bucket follows the role's rate (else the policy default); a client (one MCP client id,
        which may serve many users) gets CLIENT_FACTOR times the policy default.
        """
        rate = self.policy.rate_for(role)
        default = self.policy.rate_default
        rule = RateLimitRule(
            BucketRule(rate.capacity, rate.refill_per_second),
            BucketRule(default.capacity * CLIENT_FACTOR, default.refill_per_second * CLIENT_FACTOR),
        )
        decision = check(
            self.limiter, principal.subject_key, principal.client_id, tool, self.policy.tool_cost(tool), rule
        )
        if not decision.allowed:
            raise RateLimited(decision.message, retry_after=decision.retry_after_s if decision.retryable else None)

    def close(self) -> None:
        """Release the rate-limit and grant stores."""
        self.limiter.close()
        self.grants.close()

    # -- break-glass -----------------------------------------------------------------------------------

    def break_glass(self, principal: Principal, reason: object) -> tuple[Role, float]:
        """Open break-glass for the principal's role's bounded time; returns (role, expiry epoch seconds).

        StoreError when the grant store (Redis, shared by workers) fails: no grant rather than a local one."""
        role = self.role_of(principal)
        allowed = self.tool_decision(role, "break_glass")
        if not allowed.allowed:
            raise AccessDenied(allowed.detail, reason=allowed.reason)
        if not isinstance(reason, str) or len(reason.strip()) < BREAK_GLASS_REASON_MIN:
            raise InvalidInput(
                "reason", "must say why emergency access is needed", f"at least {BREAK_GLASS_REASON_MIN} characters"
            )
        until = time.time() + role.break_glass_minutes * 60
        if principal.expires_at is not None:
            until = min(until, principal.expires_at)
        self.grants.grant(principal.subject_key, until)
        return role, until

    def break_glass_active(self, principal: Principal) -> bool:
        """Whether the principal opened break-glass and it has not expired (False when the grant store fails)."""
        return self.grants.active(principal.subject_key)
