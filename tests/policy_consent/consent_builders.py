"""Builders for Consent resources and queries used by the policy_consent tests."""

from __future__ import annotations

from datetime import date
from typing import Any

from fhirgate.core.policy.consent import ConsentQuery

NOW = date(2025, 6, 30)
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONF = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
TYPES = "http://hl7.org/fhir/resource-types"
ACTION = "http://terminology.hl7.org/CodeSystem/consentaction"
SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"

Json = dict[str, Any]


def label(code: str) -> Json:
    """A securityLabel Coding in its proper system."""
    return {"system": CONF if code in "ULMNRV" else ACT, "code": code}


def purpose(code: str) -> Json:
    return {"system": REASON, "code": code}


def actor(ref: str) -> Json:
    role = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]}
    return {"role": role, "reference": {"reference": ref}}


def klass(rtype: str) -> Json:
    return {"system": TYPES, "code": rtype}


def action(code: str) -> Json:
    return {"coding": [{"system": ACTION, "code": code}]}


def prov(kind: str | None = None, *children: Json, **conditions: Any) -> Json:
    """A provision: type, nested provisions, and R4 condition elements by name (class_ for class)."""
    out: Json = {}
    if kind:
        out["type"] = kind
    for key, value in conditions.items():
        out[key.rstrip("_")] = value
    if children:
        out["provision"] = list(children)
    return out


def consent(
    provision: Json | None = None,
    *,
    cid: str = "c1",
    patient: str = "p1",
    status: str = "active",
    policy: str | None = None,
    scope: str | None = "patient-privacy",
    when: str = "2024-01-01T09:00:00Z",
) -> Json:
    body: Json = {
        "resourceType": "Consent",
        "id": cid,
        "status": status,
        "patient": {"reference": f"Patient/{patient}"},
        "dateTime": when,
    }
    if scope:
        body["scope"] = {"coding": [{"system": SCOPE, "code": scope}]}
    if policy:
        body["policyRule"] = {"coding": [{"system": ACT, "code": policy}]}
    if provision is not None:
        body["provision"] = provision
    return body


def query(**kw: Any) -> ConsentQuery:
    """A ConsentQuery with defaults: a Condition read for TREAT by Practitioner/pr-1 of Organization/org-1."""
    kw.setdefault("resource_type", "Condition")
    kw.setdefault("purpose", "TREAT")
    kw.setdefault("now", NOW)
    kw.setdefault("actor_refs", frozenset({"Practitioner/pr-1", "Organization/org-1"}))
    for key in ("labels", "actor_refs", "codes", "references"):
        if isinstance(kw.get(key), set | list | tuple):
            kw[key] = frozenset(kw[key])
    return ConsentQuery(**kw)
