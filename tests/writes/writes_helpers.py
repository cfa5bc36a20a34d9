"""Builders for safe-write tests: principals, appointments, proposals and a settable clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.scopes import ScopeSet
from fhirgate.core.writes.proposal import Proposal, format_instant
from fhirgate.core.writes.risk import assess_one

MAC_KEY = b"k" * 32
START = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


class Clock:
    """A settable clock for expiry tests."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


def principal(sub: str = "alice", client: str | None = "chat-app") -> Principal:
    return Principal(sub=sub, issuer="https://idp.example", scopes=ScopeSet.parse("user/*.cruds"), client_id=client)


def appointment(status: str = "booked", version: str | None = "3", patient: str = "p1", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": "appt-1",
        "status": status,
        "start": "2026-06-02T09:00:00Z",
        "end": "2026-06-02T09:20:00Z",
        "participant": [
            {"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"},
            {"actor": {"reference": "Practitioner/dr-1"}, "status": "accepted"},
        ],
    }
    if version is not None:
        body["meta"] = {"versionId": version, "lastUpdated": "2026-05-30T10:00:00.000Z"}
    body.update(extra)
    return body


def make_proposal(
    *,
    pid: str = "prop-1",
    who: Principal | None = None,
    idem: str = "idem-1",
    current: dict[str, Any] | None = None,
    proposed: dict[str, Any] | None = None,
    kind: str = "update",
    now: datetime = START,
    ttl: timedelta = timedelta(hours=1),
) -> Proposal:
    who = who or principal()
    if kind == "update":
        current = current if current is not None else appointment()
        proposed = proposed if proposed is not None else appointment("cancelled", version=None)
    elif kind == "create":
        current = None
    else:
        proposed = None
    rtype = (proposed or current or {})["resourceType"]
    target = (proposed or current or {})["id"]
    risk = assess_one(kind, rtype, current, proposed)
    return Proposal(
        id=pid,
        kind=kind,
        resource_type=rtype,
        target_id=target,
        resource=proposed,
        current=current,
        base_version=current["meta"]["versionId"] if current else None,
        subject_key=who.subject_key,
        client_id=who.client_id,
        purpose="PATADMIN",
        idempotency_key=idem,
        created=format_instant(now),
        expires=format_instant(now + ttl),
        risk=risk.level,
        risk_reasons=risk.codes,
    )
