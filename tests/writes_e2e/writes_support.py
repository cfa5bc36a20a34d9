"""Principals and helpers for safe-write tests."""

from __future__ import annotations

from typing import Any

import orjson

from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.scopes import ScopeSet
from fhirgate.service.gateway import Gateway
from fhirgate.store.contract import FhirStore


def staff(sub: str = "alice", client: str = "tests") -> Principal:
    """A practice_staff principal (no role claim, no fhirUser): may book and draft notes."""
    return Principal(sub=sub, issuer="urn:test", scopes=ScopeSet.parse("user/*.cruds"), client_id=client)


def clinician(practitioner: str, sub: str = "dr") -> Principal:
    """A clinician (Practitioner fhirUser): care-team access, clinical write types."""
    return Principal(
        sub=sub,
        issuer="urn:test",
        scopes=ScopeSet.parse("user/*.cruds"),
        client_id="tests",
        fhir_user=f"Practitioner/{practitioner}",
    )


def reader(sub: str = "rita") -> Principal:
    """Read-only SMART scopes: no c/u scope, so no write."""
    return Principal(sub=sub, issuer="urn:test", scopes=ScopeSet.parse("user/*.rs"), client_id="tests")


def free_slot(store: FhirStore, practitioner: str, *, skip: int = 0) -> dict[str, Any]:
    """A free future Slot of the practitioner's Schedule (the `skip`-th one)."""
    import datetime as dt

    from fhirgate.writes.calendar import practitioner_slots

    now = dt.datetime.now(dt.UTC)
    slots = practitioner_slots(
        store, f"Practitioner/{practitioner}", now + dt.timedelta(days=1), now + dt.timedelta(days=20)
    )
    free = [s for s in slots if s.get("status") == "free"]
    return free[skip]


def practitioner_with_slots(store: FhirStore) -> str:
    """A practitioner id that keeps a Schedule with free Slots."""
    for schedule in store.iter_type("Schedule"):
        for actor in schedule.body.get("actor") or []:
            ref = actor.get("reference", "")
            if ref.startswith("Practitioner/"):
                return str(ref.removeprefix("Practitioner/"))
    raise AssertionError("no practitioner keeps a Schedule")


def some_patient(store: FhirStore, gateway: Gateway, *, skip: int = 0) -> str:
    """A patient id visible to practice staff (no opt-out Consent)."""
    optouts = gateway.governance.consents().patients_opted_out(__import__("datetime").date.today())
    ids = sorted(s.id for s in store.iter_type("Patient") if s.id not in optouts)
    return ids[skip]


def structured(result: Any) -> dict[str, Any]:
    """A tool result's structured content, or its text parsed."""
    if result.structured_content is not None:
        return dict(result.structured_content)
    return dict(orjson.loads(result.content[0].text))
