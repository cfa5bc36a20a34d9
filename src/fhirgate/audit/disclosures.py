"""Accounting of disclosures (HIPAA 45 CFR 164.528) for one patient, read from the audit log.

164.528(a) gives an individual the right to an accounting of disclosures of their PHI made in the six
years before the request, each with (b)(2) the date, the recipient, a brief description of the PHI
disclosed and the purpose. It exempts, among others, disclosures (a)(1)(i) to carry out treatment,
payment and health care operations (TPO), (ii) to the individual, and (iv) under an authorization.

What fhirgate lists: EVERY successful access by an AI client whose audit record names the patient
(a read, a search, a report or SQL query that touched the patient's compartment), whether exempt or
not. Each entry carries `exempt_reason`: "treatment", "payment", "operations" or "to the individual"
when the stated purpose of use (v3-ActReason codes from the token) or the recipient makes it exempt,
else None. A compliance officer filters on it; fhirgate cannot know that an authorization exists, so
authorized disclosures show as not exempt. A purpose counts as exempt only when every stated code is
a TPO or to-the-individual code; no stated purpose is never exempt.

No PHI: entries hold ids (request, client, user), resource types, parameter and view names, and
purpose codes. Ids of other patients and of individual resources are never included, so the
accounting can be handed to the patient.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fhirgate.audit.chain import AuditEntry, AuditStore
from fhirgate.audit.record import AuditRecord
from fhirgate.errors import InvalidInput

# 164.528(a): "disclosures ... in the six years prior to the date on which the accounting is requested".
WINDOW_YEARS = 6
NOT_STATED = "not stated"
ACT_REASON_SYSTEMS = frozenset({"http://terminology.hl7.org/CodeSystem/v3-ActReason", "urn:oid:2.16.840.1.113883.5.8"})
# v3-ActReason purpose-of-use codes by the 164.528(a)(1) exemption they fall under.
_TREATMENT = ["TREAT", "ETREAT", "BTG", "COC"]
_PAYMENT = ["HPAYMT", "CLMATTCH", "COVAUTH", "COVERAGE", "ELIGDET", "ELIGVER", "ENROLLM", "REMITADV"]
_OPERATIONS = [
    "HOPERAT",
    "CAREMGT",
    "HACCRED",
    "HCOMPL",
    "HOUTCOMS",
    "HPRGRP",
    "HQUALIMP",
    "HSYSADMIN",
    "MEMADMIN",
    "PATADMIN",
    "PATSFTY",
    "PERFMSR",
    "RECORDMGT",
    "TRAIN",
]
_TO_INDIVIDUAL = ["PATRQT", "PWATRNY"]  # a personal representative stands in for the individual (164.502(g))
EXEMPT_PURPOSES: dict[str, str] = {
    **dict.fromkeys(_TREATMENT, "treatment"),
    **dict.fromkeys(_PAYMENT, "payment"),
    **dict.fromkeys(_OPERATIONS, "operations"),
    **dict.fromkeys(_TO_INDIVIDUAL, "to the individual"),
}
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")  # FHIR R4 id datatype (§2.24.0.1)
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}")
_ANALYTIC = ("report", "sql")


@dataclass(frozen=True, slots=True)
class Disclosure:
    """One accounted access: when, to whom (client and user), what (types and names only), why, and if exempt."""

    seq: int
    date: str
    request_id: str
    client_id: str | None
    user: str | None
    sub: str | None
    description: str
    resource_types: tuple[str, ...]
    purpose: str
    purpose_of_use: tuple[str, ...]
    exempt_reason: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (tuples as lists)."""
        return {
            "seq": self.seq,
            "date": self.date,
            "request_id": self.request_id,
            "recipient": {"client_id": self.client_id, "user": self.user, "sub": self.sub},
            "description": self.description,
            "resource_types": list(self.resource_types),
            "purpose": self.purpose,
            "purpose_of_use": list(self.purpose_of_use),
            "exempt": self.exempt_reason is not None,
            "exempt_reason": self.exempt_reason,
        }


def check_patient_id(patient_id: object) -> str:
    """A FHIR id (letters, digits, '-', '.', at most 64); InvalidInput names the parameter otherwise."""
    if not isinstance(patient_id, str) or not _FHIR_ID.fullmatch(patient_id):
        raise InvalidInput("patient", "not a FHIR id", "1-64 letters, digits, '-' or '.'")
    return patient_id


def parse_day(value: object, param: str) -> dt.date | None:
    """A date given as datetime.date, 'YYYY-MM-DD' or None; InvalidInput naming `param` otherwise."""
    if value is None or (isinstance(value, dt.date) and not isinstance(value, dt.datetime)):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise InvalidInput(param, "not a calendar date", "YYYY-MM-DD")


def default_since(today: dt.date) -> dt.date:
    """Six years before `today` (29 February falls back to the 28th)."""
    try:
        return today.replace(year=today.year - WINDOW_YEARS)
    except ValueError:
        return today.replace(year=today.year - WINDOW_YEARS, day=28)


def window(
    since: dt.date | str | None, until: dt.date | str | None, *, today: dt.date | None = None
) -> tuple[dt.date, dt.date]:
    """The (since, until) days, both inclusive: defaults are six years ago and today (UTC)."""
    day = today or dt.datetime.now(dt.UTC).date()
    first = parse_day(since, "since") or default_since(day)
    last = parse_day(until, "until") or day
    if first > last:
        raise InvalidInput("since", "is after until", "since <= until")
    return first, last


def _purpose_code(value: str) -> str | None:
    """The bare v3-ActReason code of a purpose (`TREAT` or `system|TREAT`); None for other code systems."""
    system, sep, code = value.rpartition("|")
    if sep and system not in ACT_REASON_SYSTEMS:
        return None
    return code


def exempt_reason(record: AuditRecord, patient_id: str) -> str | None:
    """Why 164.528(a)(1) exempts this access, or None: recipient is the patient, or every purpose is TPO."""
    if record.fhir_user == f"Patient/{patient_id}":
        return "to the individual"
    if not record.purpose_of_use:
        return None
    reasons = [EXEMPT_PURPOSES.get(_purpose_code(p) or "") for p in record.purpose_of_use]
    if any(r is None for r in reasons):
        return None
    return reasons[0]


def _query_parts(query: str | None) -> tuple[str | None, list[str]]:
    if not query:
        return None, []
    base, _, params = query.partition("?")
    names = [p.partition("=")[0] for p in params.split("&") if p]
    return (base if _RESOURCE_TYPE.fullmatch(base) else None), [n for n in names if n and n != "_invalid"]


def describe(record: AuditRecord) -> tuple[str, tuple[str, ...]]:
    """A brief PHI-free description of what was disclosed, and the resource types involved."""
    base, names = _query_parts(record.query)
    types = {base} if base else set()
    for ref in record.references:
        rtype = ref.partition("/")[0]
        if _RESOURCE_TYPE.fullmatch(rtype):
            types.add(rtype)
    ordered = tuple(sorted(types))
    label = record.name or record.method
    text = f"{label} ({record.interaction})" if record.interaction != label else label
    if ordered:
        text += f"; resource types: {', '.join(ordered)}"
    if names:
        kind = "views" if record.interaction.startswith(_ANALYTIC) else "search parameters"
        text += f"; {kind}: {', '.join(sorted(set(names)))}"
    return text, ordered


def _entries(log: AuditStore, patient_id: str) -> Iterator[AuditEntry]:
    """Entries that may name the patient: a cheap text test on the stored JSON before parsing."""
    needle = f'"{patient_id}"'
    for seq, prev, hash_, text in log.raw_rows():
        if needle in str(text):
            yield AuditEntry(int(seq), str(prev), str(hash_), AuditRecord.from_row(str(text)))


def disclosures(
    log: AuditStore,
    patient_id: str,
    since: dt.date | str | None = None,
    until: dt.date | str | None = None,
    *,
    today: dt.date | None = None,
) -> list[Disclosure]:
    """Successful accesses naming `patient_id` between since and until (inclusive days, UTC), oldest first.

    Defaults: since six years before today, until today (164.528(a)). Exempt accesses are included and
    marked (`exempt_reason`), see the module docstring.
    """
    check_patient_id(patient_id)
    first, last = window(since, until, today=today)
    low = f"{first.isoformat()}T00:00:00.000Z"
    high = f"{(last + dt.timedelta(days=1)).isoformat()}T00:00:00.000Z"
    out: list[Disclosure] = []
    for entry in _entries(log, patient_id):
        rec = entry.record
        if rec.outcome != "success" or patient_id not in rec.patients or not low <= rec.time < high:
            continue
        description, types = describe(rec)
        out.append(
            Disclosure(
                seq=entry.seq,
                date=rec.time,
                request_id=rec.request_id,
                client_id=rec.client_id,
                user=rec.fhir_user or rec.sub,
                sub=rec.sub,
                description=description,
                resource_types=types,
                purpose=", ".join(rec.purpose_of_use) or NOT_STATED,
                purpose_of_use=rec.purpose_of_use,
                exempt_reason=exempt_reason(rec, patient_id),
            )
        )
    return out


def audit_events(
    log: AuditStore,
    patient_id: str,
    since: dt.date | str | None = None,
    until: dt.date | str | None = None,
    *,
    today: dt.date | None = None,
) -> list[dict[str, Any]]:
    """The accounted accesses as FHIR AuditEvents (IHE BALP, one per access, this patient only).

    Ids of other patients and of individual resources are removed (they may belong to other patients);
    an event that lost a data entity no longer claims a BALP profile.
    """
    from fhirgate.audit.balp import to_audit_events

    wanted = {d.seq for d in disclosures(log, patient_id, since, until, today=today)}
    keep = f"Patient/{patient_id}"
    out: list[dict[str, Any]] = []
    for entry in _entries(log, patient_id):
        if entry.seq not in wanted:
            continue
        for event in to_audit_events(entry, per_patient=True):
            refs = {e.get("what", {}).get("reference") for e in event["entity"] if e.get("role", {}).get("code") == "1"}
            if keep not in refs:
                continue
            entities = [
                e for e in event["entity"] if "reference" not in e.get("what", {}) or e["what"]["reference"] == keep
            ]
            if len(entities) != len(event["entity"]):
                event.pop("meta", None)
            event["entity"] = entities
            out.append(event)
    return out


def accounting(
    log: AuditStore,
    patient_id: str,
    since: dt.date | str | None = None,
    until: dt.date | str | None = None,
    *,
    today: dt.date | None = None,
) -> dict[str, Any]:
    """The accounting as a JSON-ready dict, for the compliance role's `audit_disclosures` tool and the CLI."""
    first, last = window(since, until, today=today)
    items = disclosures(log, patient_id, first, last)
    return {
        "patient": patient_id,
        "since": first.isoformat(),
        "until": last.isoformat(),
        "count": len(items),
        "not_exempt": sum(1 for d in items if d.exempt_reason is None),
        "disclosures": [d.to_dict() for d in items],
        "note": (
            "45 CFR 164.528: every access by an AI client is listed; entries with exempt_reason (treatment, "
            "payment, operations, to the individual) are exempt from the accounting. Disclosures under an "
            "authorization are also exempt but cannot be recognised from the audit log."
        ),
    }
