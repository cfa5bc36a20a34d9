"""Helpers for governance tests: the demo practice's raw facts computed independently, principals per role."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from fhirgate.config import DataDir
from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.scopes import ScopeSet
from fhirgate.demo.generator import write_practice
from fhirgate.service.context import RequestContext
from fhirgate.store.factory import open_store

TODAY = dt.date(2026, 11, 21)
PATIENTS = 60
SENSITIVE = {"R", "V", "ETH", "PSY", "HIV", "STD", "SDV", "SEX", "BH", "GDIS", "42CFRPart2"}
TYPES = (
    "Patient", "Practitioner", "Appointment", "Encounter", "Condition", "Observation", "MedicationRequest",
    "AllergyIntolerance", "Immunization", "Procedure", "DiagnosticReport", "DocumentReference", "CareTeam",
    "Claim", "Invoice", "Coverage", "Consent",
)  # fmt: skip


def _refs(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str) and ref.startswith("Patient/"):
            out.add(ref.removeprefix("Patient/"))
        for value in node.values():
            _refs(value, out)
    elif isinstance(node, list):
        for value in node:
            _refs(value, out)


@dataclass
class Facts:
    """What the raw resources say, computed here without fhirgate's policy code."""

    data_dir: DataDir
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)  # "Type/id" -> body
    patients_of: dict[str, set[str]] = field(default_factory=dict)  # "Type/id" -> patient ids referenced
    labelled: dict[str, set[str]] = field(default_factory=dict)  # "Type/id" -> sensitive label codes
    optouts: set[str] = field(default_factory=set)
    practitioner: str = ""
    care_team: set[str] = field(default_factory=set)

    def visible_to_staff(self, ref: str) -> bool:
        """Whether a practice-wide role with no sensitive labels may see the resource."""
        return not self.labelled.get(ref) and not (self.patients_of.get(ref, set()) & self.optouts)


def build_facts(data: DataDir) -> Facts:
    """Write the demo practice into `data` and read its facts back from the raw resources."""
    store = open_store(data)
    try:
        write_practice(store, patients=PATIENTS, seed=7, today=TODAY)
        out = Facts(data)
        for rtype in TYPES:
            for stored in store.iter_type(rtype):
                ref, body = stored.ref, stored.body
                out.bodies[ref] = body
                pats: set[str] = {stored.id} if rtype == "Patient" else set()
                _refs({k: v for k, v in body.items() if k != "meta"}, pats)
                out.patients_of[ref] = pats
                codes = {c.get("code") for c in (body.get("meta") or {}).get("security", []) if isinstance(c, dict)}
                if codes & SENSITIVE:
                    out.labelled[ref] = {str(c) for c in codes & SENSITIVE}
                if rtype == "Consent" and body.get("status") == "active":
                    rule = {c.get("code") for c in (body.get("policyRule") or {}).get("coding", [])}
                    if "OPTOUT" in rule:
                        out.optouts.add(body["patient"]["reference"].removeprefix("Patient/"))
    finally:
        store.close()
    # The practitioner with the most appointments, and the patients linked to them (care team), from raw JSON.
    counts: dict[str, int] = {}
    for ref, body in out.bodies.items():
        if ref.startswith("Appointment/"):
            for p in body.get("participant", []):
                actor = (p.get("actor") or {}).get("reference", "")
                if actor.startswith("Practitioner/"):
                    counts[actor] = counts.get(actor, 0) + 1
    out.practitioner = max(counts, key=lambda k: (counts[k], k))
    for ref, body in out.bodies.items():
        rtype = ref.split("/", 1)[0]
        linked = False
        if rtype == "Appointment":
            linked = any((p.get("actor") or {}).get("reference") == out.practitioner for p in body["participant"])
        elif rtype == "Encounter":
            linked = any(
                (p.get("individual") or {}).get("reference") == out.practitioner for p in body.get("participant", [])
            )
        elif rtype == "CareTeam":
            members = [(p.get("member") or {}).get("reference") for p in body.get("participant", [])]
            linked = out.practitioner in members
        elif rtype == "Patient":
            linked = any(g.get("reference") == out.practitioner for g in body.get("generalPractitioner", []))
        if linked:
            out.care_team |= out.patients_of[ref]
    assert out.optouts and out.labelled and out.care_team, "the demo practice has opt-outs, labels and care teams"
    return out


def who(
    scope: str = "user/*.rs",
    *,
    role: str | None = None,
    fhir_user: str | None = None,
    patient: str | None = None,
    purpose: tuple[str, ...] = (),
    sub: str = "gov-test",
) -> Principal:
    return Principal(
        sub=sub,
        issuer="urn:test",
        scopes=ScopeSet.parse(scope),
        client_id="tests",
        fhir_user=fhir_user,
        patient=patient,
        purpose_of_use=purpose,
        role=role,
    )


def ctx(p: Principal) -> RequestContext:
    return RequestContext(p)
