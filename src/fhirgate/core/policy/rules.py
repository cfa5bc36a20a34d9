"""The governance policy model: roles, what each may see and do, purposes of use, label rules and rate limits.

Pure. rules_parse.py validates a policy Mapping or TOML text into these frozen classes (policy_loader.py
reads files); `parse_policy` and `load_policy_text` stay importable from here. Checks return a Decision with
a stable reason code. docs/policy.md documents the file format and the default policy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

from fhirgate.core.fhir.compact import SUBSETTED_SYSTEM
from fhirgate.core.policy.decision import Decision
from fhirgate.errors import ConfigError, InvalidInput

Access = Literal["care-team", "practice", "own-record"]
ACCESS_KINDS: tuple[Access, ...] = ("care-team", "practice", "own-record")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# REFERENCE §5 / HL7 v3-Confidentiality: U L M N are ordinary levels and never sensitive.
CONFIDENTIALITY_CODES: tuple[str, ...] = ("U", "L", "M", "N", "R", "V")
NEVER_SENSITIVE: frozenset[str] = frozenset({"U", "L", "M", "N"})
# v3-ActCode information sensitivity codes and the privacy policy codes fhirgate recognises.
SENSITIVITY_CODES: tuple[str, ...] = ("ETH", "HIV", "PSY", "GDIS", "STD", "SDV", "SEX", "BH")
POLICY_CODES: tuple[str, ...] = ("42CFRPart2", "NORDSCLCD")
KNOWN_LABELS: frozenset[str] = frozenset(CONFIDENTIALITY_CODES + SENSITIVITY_CODES + POLICY_CODES)
DEFAULT_SENSITIVE_LABELS: frozenset[str] = frozenset(
    {"R", "V", "ETH", "PSY", "HIV", "STD", "SDV", "SEX", "BH", "GDIS", "42CFRPart2"}
)

# Purpose-of-use codes: the PurposeOfUse subset of HL7 v3-ActReason (the codes a token's purpose_of_use
# and an AuditEvent's purposeOfUse carry). Grouped by parent: treatment, payment, operations, research,
# individual request, public health and legal.
PURPOSES: frozenset[str] = _words(
    "TREAT ETREAT BTG CAREMGT CLINTRCH COC POPHLTH "
    "HPAYMT CLMATTCH COVAUTH COVERAGE ELIGDTRM ELIGVER ENROLLM REMITADV "
    "HOPERAT HACCRED HCOMPL HDECD HDIRECT HDM HLEGAL HOUTCOMS HPRGRP HQUALIMP HSYSADMIN LABELING "
    "METAMGT MEMADMIN PATADMIN PATSFTY PERFMSR RECORDMGT SYSDEV HTEST TRAIN FRAUD GOV DONAT "
    "HRESCH BIORCH CLINTRCHNPC CLINTRCHPC PRECLINTRCH DSRCH POARCH TRANSRCH "
    "PATRQT FAMRQT PWATRNY SUPNWK PUBHLTH DISASTER THREAT HMARKT"
)

# The write tools of issue 7: they only propose a write (confirmed in chat or approved by another human), and
# are refused and left out of tools/list unless writes are enabled ([writes] or `fhirgate serve --allow-writes`).
WRITE_TOOLS: frozenset[str] = _words(
    "book_appointment update_appointment add_clinical_note create_resource update_resource proposal_status"
)
# MCP tool names a policy may name: the tools fhirgate registers (mcp/*_tools.py; a test checks the server
# against this list) plus any planned ones, which a policy may name before they exist.
CURRENT_TOOLS: frozenset[str] = (
    _words(
        "whoami find_patients patient_summary search_resources read_resource patient_everything grep_record "
        "list_views describe_view query_sql run_report break_glass lookup_code audit_disclosures"
    )
    | WRITE_TOOLS
)
PLANNED_TOOLS: frozenset[str] = frozenset()
KNOWN_TOOLS: frozenset[str] = CURRENT_TOOLS | PLANNED_TOOLS
# Bounds of [writes] proposal_ttl_hours: at most 30 days, as the proposal store allows (docs/writes.md).
PROPOSAL_TTL_HOURS_MAX = 720

# Kept by every projection: identity and labels (meta.security) plus the modifier elements, because
# dropping a modifier changes the meaning of what remains (FHIR R4 §2.6.1.1.3 modifierExtension, implicitRules).
ALWAYS_KEPT: frozenset[str] = frozenset({"resourceType", "id", "meta", "implicitRules", "modifierExtension"})

DEFAULT_ROLE_CLAIM = "fhirgate_role"
PRACTITIONER_TYPES = frozenset({"Practitioner", "PractitionerRole"})
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class PolicyError(ConfigError):
    """An invalid policy; `issues` lists every problem as `dotted.path: problem; allowed`."""

    def __init__(self, source: str, issues: tuple[str, ...]) -> None:
        lines = "\n".join(f"  - {issue}" for issue in issues)
        count = f"{len(issues)} issue" + ("" if len(issues) == 1 else "s")
        super().__init__(f"invalid policy {source} ({count}):\n{lines}")
        self.source = source
        self.issues = issues


def shown(value: object) -> str:
    """A caller-supplied code for a message: quoted when it looks like a code, else a placeholder."""
    return repr(value) if isinstance(value, str) and _CODE.fullmatch(value) else "(invalid value)"


@dataclass(frozen=True, slots=True)
class FieldRule:
    """Top-level elements of one resource type a role sees: `include` (None = all) minus `exclude`.

    Names are JSON element names; choice elements are listed concretely (the parser expands
    `value[x]`). ALWAYS_KEPT elements (id, resourceType, meta, implicitRules, modifierExtension) stay.
    """

    include: frozenset[str] | None = None
    exclude: frozenset[str] = frozenset()

    def keeps(self, name: str) -> bool:
        """Whether the element `name` (or its `_name` primitive extension) survives the projection."""
        base = name[1:] if name.startswith("_") and len(name) > 1 else name
        if base in ALWAYS_KEPT:
            return True
        return (self.include is None or base in self.include) and base not in self.exclude

    def apply(self, resource: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
        """The projected copy and the sorted names of elements present and omitted (FHIR R4 §3.1.1.5.8)."""
        kept = {k: v for k, v in resource.items() if self.keeps(k)}
        omitted = tuple(sorted({k.lstrip("_") for k in resource if not self.keeps(k)}))
        if omitted:
            # A subsetted resource SHOULD carry the SUBSETTED tag so nobody takes it for the whole record.
            meta = dict(kept.get("meta") or {})
            tags = [t for t in meta.get("tag") or () if isinstance(t, Mapping)]
            if not any(t.get("system") == SUBSETTED_SYSTEM and t.get("code") == "SUBSETTED" for t in tags):
                tags.append({"system": SUBSETTED_SYSTEM, "code": "SUBSETTED", "display": "subsetted"})
            meta["tag"] = tags
            kept["meta"] = meta
        return kept, omitted


@dataclass(frozen=True, slots=True)
class RateRule:
    """A token bucket: up to `capacity` tokens, refilled at `refill_per_second`; a call spends its tool cost."""

    capacity: float
    refill_per_second: float


@dataclass(frozen=True, slots=True)
class WritePolicy:
    """Whether write tools are on at all (off by default: the server is read-only) and how long a proposal lives.

    `enabled` comes from `[writes]` or `fhirgate serve --allow-writes`; which types a role may propose writes for
    is `Role.write_types`. `proposal_ttl_hours` is 1..PROPOSAL_TTL_HOURS_MAX.
    """

    enabled: bool = False
    proposal_ttl_hours: int = 24


@dataclass(frozen=True, slots=True)
class Role:
    """One role: its access kind, resource types, purposes, label grants, break-glass, projections and tools.

    `resource_types`/`tools` None means every type/tool. `purposes[0]` is the default purpose.
    `sensitive` labels are visible under `sensitive_purposes` (empty = any of the role's purposes);
    `break_glass_sensitive` labels additionally while break-glass is active. `write_types` are the resource
    types the role may propose writes for (empty = none; always within `resource_types`).
    """

    name: str
    description: str
    access: Access
    resource_types: frozenset[str] | None
    purposes: tuple[str, ...]
    sensitive: frozenset[str] = frozenset()
    sensitive_purposes: frozenset[str] = frozenset()
    break_glass: bool = False
    break_glass_minutes: int = 60
    break_glass_sensitive: frozenset[str] = frozenset()
    deidentify: bool = False
    optout_aggregates: bool = False
    fields: Mapping[str, FieldRule] = field(default_factory=lambda: MappingProxyType({}))
    tools: frozenset[str] | None = None
    rate: RateRule | None = None
    write_types: frozenset[str] = frozenset()

    @property
    def default_purpose(self) -> str:
        """The purpose of use assumed when a request names none."""
        return self.purposes[0]

    def allows_type(self, rtype: str) -> Decision:
        """Whether this role may see resources of type `rtype` at all."""
        if self.resource_types is None or rtype in self.resource_types:
            return Decision.allow("role.type_allowed", f"role {self.name} may see {rtype}")
        allowed = ", ".join(sorted(self.resource_types)) or "none"
        return Decision.deny(
            "role.type_not_allowed", f"role {self.name} may not see {shown(rtype)}; allowed types: {allowed}"
        )

    def allows_tool(self, name: str) -> Decision:
        """Whether this role may call the MCP tool `name`."""
        if self.tools is None or name in self.tools:
            return Decision.allow("role.tool_allowed", f"role {self.name} may call {name}")
        allowed = ", ".join(sorted(self.tools)) or "none"
        return Decision.deny(
            "role.tool_not_allowed", f"role {self.name} may not call {shown(name)}; allowed tools: {allowed}"
        )

    def allows_write(self, rtype: str, tool: str | None = None) -> Decision:
        """Whether this role may propose writes of `rtype` (a supported type name; its `write_types`)."""
        if rtype in self.write_types:
            return Decision.allow("writes.type_allowed", f"role {self.name} may propose writes of {rtype}")
        allowed = ", ".join(sorted(self.write_types)) or "none"
        which = f", which {tool} writes" if tool else ""
        return Decision.deny(
            "writes.type_not_allowed",
            f"Role {self.name} may not write {rtype}{which}; its write types: {allowed}.",
        )

    def field_rule(self, rtype: str) -> FieldRule | None:
        """The projection for `rtype` (else the "*" default), or None when the role sees every element."""
        return self.fields.get(rtype) or self.fields.get("*")

    def purpose_for(self, requested: tuple[str, ...]) -> Decision:
        """Whether every requested purpose is allowed; empty means the default purpose; detail names the allowed."""
        allowed = ", ".join(self.purposes)
        if not requested:
            return Decision.allow(
                "purpose.default", f"purpose {self.default_purpose} (default of role {self.name}; allowed: {allowed})"
            )
        refused = [p for p in requested if p not in self.purposes]
        if refused:
            names = ", ".join(shown(p) for p in refused)
            return Decision.deny("purpose.not_allowed", f"role {self.name} may not act for {names}; allowed: {allowed}")
        return Decision.allow(
            "purpose.allowed", f"purpose {' '.join(requested)} (role {self.name}; allowed: {allowed})"
        )

    def visible_labels(self, purpose: str, break_glass_active: bool) -> frozenset[str]:
        """The sensitive labels this role may see under `purpose` (the `visible` set of labels.label_decision)."""
        if purpose not in self.purposes:
            return frozenset()
        out = self.sensitive if not self.sensitive_purposes or purpose in self.sensitive_purposes else frozenset()
        if break_glass_active and self.break_glass:
            out = out | self.sensitive | self.break_glass_sensitive
        return out

    def may_see_label(self, label: str, purpose: str, break_glass_active: bool) -> Decision:
        """Whether a resource carrying sensitive `label` is visible under `purpose` (one effective purpose code).

        Call it for labels in Policy.sensitive_labels (Policy.may_see_label does that filtering); U, L, M
        and N are never sensitive. Break-glass widens only roles with `break_glass` and only by their
        `break_glass_sensitive` codes (plus `sensitive` regardless of purpose).
        """
        if label in NEVER_SENSITIVE:
            return Decision.allow("label.not_sensitive", f"{label} is not a sensitive label")
        if purpose not in self.purposes:
            return Decision.deny("purpose.not_allowed", f"role {self.name} may not act for {shown(purpose)}")
        purpose_ok = not self.sensitive_purposes or purpose in self.sensitive_purposes
        if label in self.sensitive and purpose_ok:
            return Decision.allow("label.allowed_for_role", f"role {self.name} may see {label} for {purpose}")
        if break_glass_active and self.break_glass and label in (self.break_glass_sensitive | self.sensitive):
            return Decision.allow("label.break_glass", f"{label} visible to role {self.name} under break-glass")
        if label in self.sensitive:
            need = ", ".join(sorted(self.sensitive_purposes))
            return Decision.deny(
                "label.not_allowed_for_purpose", f"role {self.name} may see {label} only for purposes {need}"
            )
        hint = " without break-glass" if self.break_glass and label in self.break_glass_sensitive else ""
        return Decision.deny("label.not_allowed_for_role", f"role {self.name} may not see {shown(label)}{hint}")


@dataclass(frozen=True, slots=True)
class Policy:
    """A validated policy: roles by name, how principals get a role, sensitive labels and rate limits.

    `default_role` is the role of a principal with no role claim and no fhirUser (None = refuse);
    `practitioner_role` that of a Practitioner/PractitionerRole fhirUser; `patient_role` (an own-record
    role) that of a Patient fhirUser or patient-context principal. `tool_costs` default to 1. `writes` says
    whether write tools are on (off by default).
    """

    source: str
    roles: Mapping[str, Role]
    role_claim: str = DEFAULT_ROLE_CLAIM
    default_role: str | None = None
    practitioner_role: str = "clinician"
    patient_role: str = "patient"
    sensitive_labels: frozenset[str] = DEFAULT_SENSITIVE_LABELS
    rate_default: RateRule = RateRule(60.0, 1.0)
    tool_costs: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    redis_url: str | None = None
    writes: WritePolicy = WritePolicy()

    def with_writes_enabled(self) -> Policy:
        """A copy with write tools turned on (`fhirgate serve --allow-writes`); roles still need write_types."""
        return replace(self, writes=replace(self.writes, enabled=True))

    def role(self, name: str) -> Role:
        """The role called `name`; InvalidInput naming the defined roles otherwise."""
        found = self.roles.get(name) if isinstance(name, str) else None
        if found is None:
            raise InvalidInput("role", f"unknown role {shown(name)}", ", ".join(sorted(self.roles)))
        return found

    def resolve_role(
        self, claimed: object, fhir_user_type: str | None, patient_context: bool
    ) -> tuple[Role | None, Decision]:
        """The role of a principal, from its raw role claim, its fhirUser type and whether it acts as a patient.

        `patient_context` is True for a patient-facing launch (patient/ scopes with a `patient` claim);
        such a principal, or a Patient fhirUser, can only hold an own-record role, and an own-record role
        needs one of them. A Practitioner fhirUser with patient context is refused as contradictory (an
        EHR launch inside a chart passes patient_context=False). Without a claim: Patient/patient context
        -> patient_role, Practitioner -> practitioner_role, no fhirUser -> default_role, else refused.
        """
        if fhir_user_type is not None and not isinstance(fhir_user_type, str):
            return None, Decision.deny("role.invalid_fhir_user", "the fhirUser type is not a string")
        if fhir_user_type in PRACTITIONER_TYPES and patient_context:
            return None, Decision.deny(
                "role.context_conflict",
                f"a {fhir_user_type} fhirUser with a patient launch context cannot act as the patient",
            )
        as_patient = patient_context or fhir_user_type == "Patient"
        if claimed is not None:
            if not isinstance(claimed, str) or not claimed:
                return None, Decision.deny(
                    "role.invalid_claim", f"token claim {self.role_claim!r} must be a role name (a string)"
                )
            role = self.roles.get(claimed)
            if role is None:
                allowed = ", ".join(sorted(self.roles))
                return None, Decision.deny(
                    "role.unknown",
                    f"token claim {self.role_claim!r} names unknown role {shown(claimed)}; defined: {allowed}",
                )
            return self._checked(role, as_patient, f"role {role.name} from token claim {self.role_claim!r}")
        if as_patient:
            return self._checked(self.roles.get(self.patient_role), True, "patient context or Patient fhirUser")
        if fhir_user_type in PRACTITIONER_TYPES:
            return self._checked(self.roles.get(self.practitioner_role), False, f"{fhir_user_type} fhirUser")
        if fhir_user_type is None and self.default_role is not None:
            return self._checked(self.roles.get(self.default_role), False, "default role (no role claim, no fhirUser)")
        who = f"a {shown(fhir_user_type)} fhirUser" if fhir_user_type else "a principal without fhirUser"
        return None, Decision.deny(
            "role.unresolved", f"no role for {who} without a {self.role_claim!r} claim; the policy grants none"
        )

    @staticmethod
    def _checked(role: Role | None, as_patient: bool, how: str) -> tuple[Role | None, Decision]:
        if role is None:  # only for a Policy built by hand: parse_policy checks these references
            return None, Decision.deny("role.unresolved", f"{how}: the policy names a role it does not define")
        if as_patient and role.access != "own-record":
            return None, Decision.deny(
                "role.patient_context_requires_own_record",
                f"a patient-context principal can only hold an own-record role; {role.name} is {role.access}",
            )
        if not as_patient and role.access == "own-record":
            return None, Decision.deny(
                "role.own_record_requires_patient",
                f"role {role.name} (own-record) needs a Patient fhirUser or a patient launch context",
            )
        return role, Decision.allow("role.resolved", f"{how}: role {role.name}")

    def may_see_label(self, role: Role, label: str, purpose: str, break_glass_active: bool) -> Decision:
        """Role.may_see_label for labels in `sensitive_labels`; every other label is visible."""
        if label not in self.sensitive_labels:
            return Decision.allow("label.not_sensitive", f"{shown(label)} is not a sensitive label in this policy")
        return role.may_see_label(label, purpose, break_glass_active)

    def tool_cost(self, name: str) -> int:
        """Tokens one call of tool `name` spends (default 1)."""
        return self.tool_costs.get(name, 1)

    def rate_for(self, role: Role) -> RateRule:
        """The role's own bucket, or the policy default."""
        return role.rate or self.rate_default


def policy_to_dict(policy: Policy) -> dict[str, Any]:
    """The effective policy as plain JSON-able data (`fhirgate policy show`); the Redis URL's password is masked."""

    def names(value: frozenset[str] | None) -> list[str] | str:
        return "*" if value is None else sorted(value)

    def role_dict(r: Role) -> dict[str, Any]:
        return {
            "description": r.description,
            "access": r.access,
            "resource_types": names(r.resource_types),
            "purposes": list(r.purposes),
            "sensitive": sorted(r.sensitive),
            "sensitive_purposes": sorted(r.sensitive_purposes),
            "break_glass": r.break_glass,
            "break_glass_minutes": r.break_glass_minutes,
            "break_glass_sensitive": sorted(r.break_glass_sensitive),
            "deidentify": r.deidentify,
            "optout_aggregates": r.optout_aggregates,
            "fields": {
                t: {"include": names(f.include), "exclude": sorted(f.exclude)} for t, f in sorted(r.fields.items())
            },
            "tools": names(r.tools),
            "rate": None
            if r.rate is None
            else {"capacity": r.rate.capacity, "refill_per_second": r.rate.refill_per_second},
            "write_types": sorted(r.write_types),
        }

    redis = None if policy.redis_url is None else re.sub(r"//[^@/]*@", "//***@", policy.redis_url)
    return {
        "source": policy.source,
        "role_claim": policy.role_claim,
        "default_role": policy.default_role,
        "practitioner_role": policy.practitioner_role,
        "patient_role": policy.patient_role,
        "sensitive_labels": sorted(policy.sensitive_labels),
        "rate_limits": {
            "capacity": policy.rate_default.capacity,
            "refill_per_second": policy.rate_default.refill_per_second,
            "redis_url": redis,
            "costs": dict(sorted(policy.tool_costs.items())),
        },
        "writes": {"enabled": policy.writes.enabled, "proposal_ttl_hours": policy.writes.proposal_ttl_hours},
        "roles": {name: role_dict(r) for name, r in policy.roles.items()},
    }


def load_policy_text(text: str, source: str) -> Policy:
    """Parse and validate TOML policy text (rules_parse.load_policy_text; imported lazily, no cycle)."""
    from fhirgate.core.policy import rules_parse

    return rules_parse.load_policy_text(text, source)


def parse_policy(data: Mapping[str, Any], source: str) -> Policy:
    """Validate a policy mapping and build the Policy (rules_parse.parse_policy; imported lazily, no cycle)."""
    from fhirgate.core.policy import rules_parse

    return rules_parse.parse_policy(data, source)
