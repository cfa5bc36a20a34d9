"""Risk scoring of proposed writes: `low` may be confirmed in the chat, `high` needs another human's approval.

Every rule adds a reason (a stable dotted code, a level and a sentence naming types, paths and label
codes only, never values). The level is `high` when any reason is high; rules fail closed: a type or an
element the rules do not know is high. Rules, in order:

1. `risk.delete`: a delete is high. It removes the current version from every search and read (FHIR R4
   §3.1.0.7); history keeps it, but nothing shows it any more.
2. Resource type: scheduling types (Appointment, AppointmentResponse, Slot, Schedule; FHIR R4 §12 Workflow
   "Scheduling") are administrative (`risk.administrative`, low) as long as only their scheduling elements
   change (`SCHEDULING_ELEMENTS`), else `risk.clinical_element` (high: an Appointment's reasonCode,
   reasonReference, supportingInformation and basedOn carry clinical content). Clinical types (FHIR R4 §9
   Clinical, §10 Diagnostics, §11 Medications, §12 Care provision) are `risk.clinical` (high), except a
   new draft note: a DocumentReference create with docStatus `preliminary` (FHIR R4 composition-status) is
   `risk.clinical_draft` (low; the clinician finalises it). Every other type is `risk.unclassified` (high).
3. Status transitions (`status`): to `entered-in-error` is high (`risk.status.entered_in_error`: it states
   the record was wrong and should not have existed, FHIR R4 §2.26.0.4 / valueset-appointmentstatus); leaving
   a final Appointment status (fulfilled, cancelled, noshow, entered-in-error) is high
   (`risk.status.reopen`); other Appointment transitions (booked → cancelled, arrived, noshow, ...) are low
   (`risk.status.routine`).
4. Security labels (FHIR R4 §8.1.2 meta.security): a sensitive label on the old or new version is high
   (`risk.sensitive_label`); adding or removing any label is high (`risk.label_change`): removing one can
   expose data a role must not see.
5. Patients affected (FHIR R4 §3.2.0 Patient compartment): more than one distinct patient across the old
   and new versions of every change is high (`risk.multi_patient`), e.g. moving an appointment to another
   patient.
6. Bulk: more than `bulk_limit` resources (default 3) in one proposal is high (`risk.bulk`).
7. Scope context (SMART App Launch v2 §3 scopes): `system` (a backend service, no user in the loop) is high
   (`risk.scope.system`); `patient` and `user` add nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fhirgate.core.fhir.compartment import patients_of
from fhirgate.core.fhir.definitions import is_supported
from fhirgate.core.policy.labels import SENSITIVE_DEFAULT, labels_of
from fhirgate.core.writes.diff import FieldChange, changed_elements, diff_resources
from fhirgate.errors import InvalidInput

LEVELS: tuple[str, ...] = ("low", "high")
SCOPE_CONTEXTS: tuple[str, ...] = ("patient", "user", "system")
DEFAULT_BULK_LIMIT = 3

# Elements every resource has that say nothing clinical by themselves; meta is judged by the label rule.
_STRUCTURAL = frozenset({"resourceType", "id", "meta", "text", "identifier"})
# Scheduling elements of the FHIR R4 Scheduling resources (appointment.html, appointmentresponse.html,
# slot.html, schedule.html) whose change is administrative.
SCHEDULING_ELEMENTS: Mapping[str, frozenset[str]] = {
    "Appointment": frozenset(
        {
            "status",
            "cancelationReason",
            "serviceCategory",
            "serviceType",
            "specialty",
            "appointmentType",
            "priority",
            "description",
            "start",
            "end",
            "minutesDuration",
            "slot",
            "created",
            "comment",
            "patientInstruction",
            "participant",
            "requestedPeriod",
        }
    ),
    "AppointmentResponse": frozenset(
        {"appointment", "start", "end", "participantType", "actor", "participantStatus", "comment"}
    ),
    "Slot": frozenset(
        {
            "serviceCategory",
            "serviceType",
            "specialty",
            "appointmentType",
            "schedule",
            "status",
            "start",
            "end",
            "overbooked",
            "comment",
        }
    ),
    "Schedule": frozenset(
        {"active", "serviceCategory", "serviceType", "specialty", "actor", "planningHorizon", "comment"}
    ),
}
CLINICAL_TYPES: frozenset[str] = frozenset(
    {
        "AllergyIntolerance",
        "CarePlan",
        "CareTeam",
        "ClinicalImpression",
        "Condition",
        "DetectedIssue",
        "DiagnosticReport",
        "DocumentReference",
        "Encounter",
        "FamilyMemberHistory",
        "Goal",
        "Immunization",
        "ImagingStudy",
        "Medication",
        "MedicationAdministration",
        "MedicationDispense",
        "MedicationRequest",
        "MedicationStatement",
        "NutritionOrder",
        "Observation",
        "Procedure",
        "QuestionnaireResponse",
        "RiskAssessment",
        "ServiceRequest",
        "Specimen",
    }
)
# FHIR R4 valueset-appointmentstatus: statuses after which the appointment is over.
APPOINTMENT_FINAL: frozenset[str] = frozenset({"fulfilled", "cancelled", "noshow", "entered-in-error"})


@dataclass(frozen=True, slots=True)
class RiskReason:
    """One rule that fired: stable `code`, its `level`, and a sentence naming types, paths or label codes."""

    code: str
    level: str
    detail: str


@dataclass(frozen=True, slots=True)
class RiskAssessment:
    """The outcome of scoring: `level` is `high` when any reason is high; `patients` the distinct patient ids."""

    level: str
    reasons: tuple[RiskReason, ...]
    patients: tuple[str, ...] = ()

    @property
    def high(self) -> bool:
        return self.level == "high"

    @property
    def codes(self) -> tuple[str, ...]:
        """The reason codes, in rule order."""
        return tuple(r.code for r in self.reasons)


@dataclass(frozen=True, slots=True)
class WriteChange:
    """One resource a proposal writes: its kind, type, the stored version (None for a create) and the new one
    (None for a delete)."""

    kind: str
    resource_type: str
    current: Mapping[str, Any] | None
    proposed: Mapping[str, Any] | None


def _patients(resource: Mapping[str, Any] | None) -> set[str]:
    if resource is None:
        return set()
    rtype = resource.get("resourceType")
    if isinstance(rtype, str) and is_supported(rtype):
        try:
            return set(patients_of(dict(resource)))
        except InvalidInput:
            return set()
    return set()


def _type_rule(change: WriteChange, diff: Sequence[FieldChange]) -> RiskReason:
    rtype = change.resource_type
    scheduling = SCHEDULING_ELEMENTS.get(rtype)
    if scheduling is not None:
        touched = changed_elements(diff) - _STRUCTURAL
        others = sorted(touched - scheduling)
        if others:
            return RiskReason(
                "risk.clinical_element", "high", f"{rtype} elements beyond scheduling: {', '.join(others)}"
            )
        return RiskReason("risk.administrative", "low", f"{rtype} is a scheduling resource")
    if rtype in CLINICAL_TYPES:
        proposed = change.proposed or {}
        if change.kind == "create" and rtype == "DocumentReference" and proposed.get("docStatus") == "preliminary":
            return RiskReason("risk.clinical_draft", "low", "a new DocumentReference in draft (docStatus preliminary)")
        return RiskReason("risk.clinical", "high", f"{rtype} is clinical data")
    return RiskReason("risk.unclassified", "high", f"{rtype} has no write risk class; treated as high")


def _status_rule(change: WriteChange) -> RiskReason | None:
    old = (change.current or {}).get("status")
    new = (change.proposed or {}).get("status")
    if change.kind == "delete" or new == old or not isinstance(new, str):
        return None
    rtype = change.resource_type
    if new == "entered-in-error":
        return RiskReason("risk.status.entered_in_error", "high", f"{rtype} marked entered-in-error")
    if rtype != "Appointment":
        return None
    if isinstance(old, str) and old in APPOINTMENT_FINAL:
        return RiskReason("risk.status.reopen", "high", f"Appointment status {old} -> {new} leaves a final status")
    return RiskReason("risk.status.routine", "low", f"Appointment status {old or '(none)'} -> {new}")


def _label_rules(change: WriteChange, sensitive: frozenset[str]) -> list[RiskReason]:
    old = labels_of(change.current) if change.current is not None else frozenset()
    new = labels_of(change.proposed) if change.proposed is not None else frozenset()
    out: list[RiskReason] = []
    hits = (old | new) & sensitive
    if hits:
        out.append(
            RiskReason("risk.sensitive_label", "high", f"{change.resource_type} labelled {', '.join(sorted(hits))}")
        )
    if change.kind == "update" and old != new:
        moved = sorted(old ^ new)
        out.append(RiskReason("risk.label_change", "high", f"security labels changed: {', '.join(moved)}"))
    return out


def assess(
    changes: Sequence[WriteChange],
    *,
    scope_context: str = "user",
    sensitive: frozenset[str] = SENSITIVE_DEFAULT,
    bulk_limit: int = DEFAULT_BULK_LIMIT,
) -> RiskAssessment:
    """Score the resources one proposal writes; see the module docstring for every rule."""
    if not changes:
        raise InvalidInput("changes", "a proposal writes at least one resource")
    if scope_context not in SCOPE_CONTEXTS:
        raise InvalidInput("scope_context", "unknown scope context", ", ".join(SCOPE_CONTEXTS))
    if not isinstance(bulk_limit, int) or bulk_limit < 1:
        raise InvalidInput("bulk_limit", "must be a positive integer")
    reasons: list[RiskReason] = []
    patients: set[str] = set()
    for change in changes:
        if change.kind not in ("create", "update", "delete"):
            raise InvalidInput("kind", "unknown write kind", "create, update, delete")
        if change.kind == "delete":
            reasons.append(RiskReason("risk.delete", "high", f"delete of a {change.resource_type}"))
        diff = diff_resources(change.current, change.proposed)
        reasons.append(_type_rule(change, diff))
        status = _status_rule(change)
        if status is not None:
            reasons.append(status)
        reasons.extend(_label_rules(change, sensitive))
        patients |= _patients(change.current) | _patients(change.proposed)
    if len(patients) > 1:
        reasons.append(RiskReason("risk.multi_patient", "high", f"{len(patients)} patients affected"))
    if len(changes) > bulk_limit:
        reasons.append(
            RiskReason("risk.bulk", "high", f"{len(changes)} resources in one proposal (limit {bulk_limit})")
        )
    if scope_context == "system":
        reasons.append(RiskReason("risk.scope.system", "high", "a system-scoped client has no user in the loop"))
    unique = tuple(dict.fromkeys(reasons))
    level = "high" if any(r.level == "high" for r in unique) else "low"
    return RiskAssessment(level, unique, tuple(sorted(patients)))


def assess_one(
    kind: str,
    resource_type: str,
    current: Mapping[str, Any] | None,
    proposed: Mapping[str, Any] | None,
    *,
    scope_context: str = "user",
    sensitive: frozenset[str] = SENSITIVE_DEFAULT,
) -> RiskAssessment:
    """Score a single-resource proposal (the common case)."""
    return assess(
        [WriteChange(kind, resource_type, current, proposed)], scope_context=scope_context, sensitive=sensitive
    )
