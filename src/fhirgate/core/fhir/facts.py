"""Concise views of resources for a model: one-line summaries, fact rows and patient cards.

`compact` keeps a resource's structure; these keep only what a reader needs to act on, so a summary of a
patient's chart is a few hundred bytes per item rather than a few kilobytes: the reference to fetch more,
the date, the code as `system|code`, its display, the value and the status.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fhirgate.core.fhir.compact import check_resource, concept_text, human_name, quantity_text

_DATE_KEY_NAMES = (
    "effectiveDateTime effectivePeriod effectiveInstant occurrenceDateTime occurrencePeriod "
    "performedDateTime performedPeriod onsetDateTime onsetPeriod recordedDate authoredOn issued date "
    "period billablePeriod created whenHandedOver recorded sent timestamp start birthDate"
)
_DATE_KEYS = tuple(_DATE_KEY_NAMES.split())
_LABEL_KEYS = ("code", "vaccineCode", "medicationCodeableConcept", "medicationReference", "type", "category")
_NAMED = frozenset({"Patient", "Practitioner", "RelatedPerson", "Person", "Organization", "Location"})
_MAX_LINE = 300


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def _date_text(res: Mapping[str, Any]) -> str | None:
    for key in _DATE_KEYS:
        value = res.get(key)
        if isinstance(value, Mapping):
            value = value.get("start") or value.get("end")
        if isinstance(value, str) and value:
            return value[:10]
    return None


def _label_text(res: Mapping[str, Any]) -> str | None:
    if res["resourceType"] in _NAMED:
        name = _first(res.get("name"))
        return human_name(name) if isinstance(name, Mapping) else name if isinstance(name, str) else None
    for key in _LABEL_KEYS:
        value = _first(res.get(key))
        if isinstance(value, Mapping):
            text = value.get("display") if key == "medicationReference" else concept_text(value)
            if isinstance(text, str) and text:
                return text
    return None


def _observed_text(value: Mapping[str, Any]) -> str | None:
    """The value[x] of an Observation or component as short text."""
    for key, item in value.items():
        if not key.startswith("value"):
            continue
        if isinstance(item, Mapping):
            return quantity_text(item) or concept_text(item)
        if isinstance(item, bool | int | float | str):
            return str(item)
    return None


def summary_line(resource: Mapping[str, Any]) -> str:
    """One line for a model or a person, e.g. "Observation/abc 2024-05-01 Hemoglobin A1c 7.2 % (final)"."""
    res = check_resource(resource)
    parts = [f"{res['resourceType']}/{res.get('id', '?')}", _date_text(res), _label_text(res)]
    if res["resourceType"] == "Patient":
        parts.append(res.get("gender") if isinstance(res.get("gender"), str) else None)
    parts.append(_observed_text(res))
    components = [c for c in res.get("component") or () if isinstance(c, Mapping)]
    if components:
        pieces = (f"{concept_text(c.get('code')) or '?'} {_observed_text(c) or ''}".strip() for c in components)
        parts.append("; ".join(list(pieces)[:4]))
    status = res.get("status")
    if not isinstance(status, str):
        status = concept_text(res.get("clinicalStatus"))
    if status:
        parts.append(f"({status})")
    line = " ".join(" ".join(str(p).split()) for p in parts if p)
    return line if len(line) <= _MAX_LINE else line[: _MAX_LINE - 1] + "…"


def _primary_code(res: Mapping[str, Any]) -> str | None:
    """The first coding of the resource's main code as `system|code`."""
    for key in _LABEL_KEYS:
        value = _first(res.get(key))
        if isinstance(value, Mapping):
            for coding in value.get("coding") or ():
                if isinstance(coding, Mapping) and isinstance(coding.get("code"), str):
                    system = coding.get("system")
                    return f"{system}|{coding['code']}" if isinstance(system, str) else str(coding["code"])
    return None


def _status(res: Mapping[str, Any]) -> str | None:
    status = res.get("status")
    if isinstance(status, str):
        return status
    return concept_text(res.get("clinicalStatus"))


def fact(resource: Mapping[str, Any]) -> dict[str, Any]:
    """A clinical fact row: ref, date, code (`system|code`), display, value, status; absent parts left out."""
    res = check_resource(resource)
    row: dict[str, Any] = {"ref": f"{res['resourceType']}/{res.get('id', '?')}"}
    date = _date_text(res)
    if date:
        row["date"] = date
    code = _primary_code(res)
    if code:
        row["code"] = code
    label = _label_text(res)
    if label:
        row["display"] = label
    value = _observed_text(res)
    components = [c for c in res.get("component") or () if isinstance(c, Mapping)]
    if components:
        parts = (f"{concept_text(c.get('code')) or '?'} {_observed_text(c) or ''}".strip() for c in components)
        value = "; ".join(list(parts)[:4])
    if value:
        row["value"] = " ".join(str(value).split())[:_MAX_LINE]
    status = _status(res)
    if status:
        row["status"] = status
    return row


def _identifier_value(res: Mapping[str, Any], type_code: str) -> str | None:
    for ident in res.get("identifier") or ():
        if not isinstance(ident, Mapping):
            continue
        codings = (ident.get("type") or {}).get("coding") or ()
        if any(isinstance(c, Mapping) and c.get("code") == type_code for c in codings):
            value = ident.get("value")
            return value if isinstance(value, str) else None
    return None


def patient_card(resource: Mapping[str, Any]) -> dict[str, Any]:
    """A Patient as a list row: name, gender, birth date, MRN, phone, city/state, status, GP.

    Deliberately leaves out SSN and other identifiers, full addresses and contacts (minimum
    necessary, 45 CFR 164.502(b)): read_resource or patient_summary give the whole record.
    """
    res = check_resource(resource)
    card: dict[str, Any] = {"id": res.get("id")}
    name = _label_text(res)
    if name:
        card["name"] = name
    for key in ("gender", "birthDate"):
        if isinstance(res.get(key), str):
            card[key] = res[key]
    mrn = _identifier_value(res, "MR")
    if mrn:
        card["mrn"] = mrn
    phone = next(
        (
            t.get("value")
            for t in res.get("telecom") or ()
            if isinstance(t, Mapping) and t.get("system") == "phone" and isinstance(t.get("value"), str)
        ),
        None,
    )
    if phone:
        card["phone"] = phone
    address = _first(res.get("address"))
    if isinstance(address, Mapping):
        place = ", ".join(str(address[k]) for k in ("city", "state") if isinstance(address.get(k), str))
        if place:
            card["city"] = place
    if isinstance(res.get("active"), bool):
        card["active"] = res["active"]
    deceased = res.get("deceasedBoolean") or res.get("deceasedDateTime")
    if deceased:
        card["deceased"] = deceased
    gp = _first(res.get("generalPractitioner"))
    if isinstance(gp, Mapping) and isinstance(gp.get("reference"), str):
        card["general_practitioner"] = gp["reference"]
        if isinstance(gp.get("display"), str):
            card["general_practitioner_name"] = gp["display"]
    return card
