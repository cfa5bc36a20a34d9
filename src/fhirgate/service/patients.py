"""Patient-centred use cases: find patients by demographics, and a bounded clinical summary.

Every list is bounded and says how much was left out; every resource in a summary passes the same
per-resource authorization as a search result, so a narrow scope yields a narrower summary.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from fhirgate.core.fhir.facts import fact, patient_card
from fhirgate.core.fhir.search import parse_search
from fhirgate.errors import InvalidInput
from fhirgate.service.auditing import Trail
from fhirgate.service.code_expansion import MAX_EXPANDED
from fhirgate.service.concepts import CONDITION, ResolvedCodes, resolve
from fhirgate.service.guard import Admitted, Guard
from fhirgate.service.resources import Services, check_count, check_id, not_found, plan_query
from fhirgate.service.shaping import page_info
from fhirgate.terminology.systems import ICD10CM

FIND_MAX_COUNT = 50
# Tool argument -> FHIR Patient search parameter (FHIR R4 Patient search parameters).
FIND_FILTERS: dict[str, str] = {
    "name": "name",
    "family": "family",
    "given": "given",
    "birthdate": "birthdate",
    "gender": "gender",
    "identifier": "identifier",
    "phone": "phone",
    "email": "email",
    "address_city": "address-city",
}
GENDERS = ("male", "female", "other", "unknown")
_MAX_FILTER = 200
# `condition`: at most this many distinct patients feed the Patient search's `_id` list.
MAX_CONDITION_PATIENTS = 1000
# FHIR R4 condition-clinical: active, recurrence and relapse are the "active" statuses (as in the care-gap reports).
ACTIVE_CLINICAL = "active,recurrence,relapse"
# FHIR R4 condition-ver-status values that mean the diagnosis does not hold.
NOT_A_DIAGNOSIS = ("refuted", "entered-in-error")
_PAGE = 100


def find_patients(
    env: Services,
    guard: Guard,
    trail: Trail,
    *,
    filters: Mapping[str, str | None],
    active: bool | None,
    count: int,
    cursor: str | None,
) -> dict[str, Any]:
    """A page of patients matching demographic filters (AND), sorted by family then given name.

    The filter `condition` (words or a code, service.concepts) keeps patients with an active Condition coded with
    one of the resolved codes; every Condition is screened like a search result, so one the caller may not see
    never lets its patient through. The id list is recomputed for every page from the same arguments.
    """
    trail.resource_type = "Patient"
    pairs: list[tuple[str, str]] = []
    condition: ResolvedCodes | None = None
    for arg, value in filters.items():
        if value is None:
            continue
        if arg == "condition":
            condition = resolve(value, param="condition", kind=CONDITION)
            continue
        if arg not in FIND_FILTERS:
            raise InvalidInput(arg, "unknown filter", ", ".join(FIND_FILTERS))
        if not isinstance(value, str) or not value.strip() or len(value) > _MAX_FILTER:
            raise InvalidInput(arg, f"must be a non-empty string of at most {_MAX_FILTER} characters")
        if arg == "gender" and value not in GENDERS:
            raise InvalidInput("gender", "unknown gender", ", ".join(GENDERS))
        pairs.append((FIND_FILTERS[arg], value.strip()))
    if active is not None:
        if not isinstance(active, bool):
            raise InvalidInput("active", "must be true or false")
        pairs.append(("active", "true" if active else "false"))
    trail.query_params = [name for name, _ in pairs] + (["condition"] if condition is not None else [])
    count = check_count(count, FIND_MAX_COUNT)
    arguments: dict[str, Any] = {"filters": pairs, "count": count}
    if condition is not None:
        arguments["condition"] = [condition.text, [f"{s}|{c}" for s, c in condition.codes]]
    offset = env.pager.offset(guard.principal, "find_patients", arguments, cursor)
    query = parse_search("Patient", [*pairs, ("_sort", "family,given"), ("_count", str(count))])
    query = plan_query(guard, replace(query, offset=offset, total=offset == 0))
    if condition is not None:
        ids = condition_patients(env, guard, condition)
        if not ids:
            return _found(env, guard, trail, [], 0, None, arguments, condition)
        query = replace(query, clauses=query.clauses + parse_search("Patient", [("_id", ",".join(ids))]).clauses)
    page = env.store.search(query)
    matches, withheld = guard.admit_all(page.matches, "s")
    filtered = withheld > 0 or not guard.plan("Patient", "s").unconstrained
    total = None if filtered else page.total
    return _found(env, guard, trail, matches, total, page.next_offset, arguments, condition)


def _found(
    env: Services,
    guard: Guard,
    trail: Trail,
    matches: list[Admitted],
    total: int | None,
    next_offset: int | None,
    arguments: Mapping[str, Any],
    condition: ResolvedCodes | None,
) -> dict[str, Any]:
    for item in matches:
        trail.touch(item.ref, item.patients)
    next_cursor = env.pager.next_cursor(guard.principal, "find_patients", arguments, next_offset)
    out: dict[str, Any] = {
        "patients": [patient_card(guard.project(a.stored).body) for a in matches],
        "page": page_info(len(matches), total, next_cursor),
    }
    if condition is not None:
        out["matched"] = {"condition": condition.to_dict()}
    return {**out, **guard.notes()}


def _condition_searches(condition: ResolvedCodes) -> list[tuple[str, str]]:
    """The `code` search values for the resolved codes: one OR-list, or `:below` when ICD-10-CM is too long."""
    icd = [(s, c) for s, c in condition.codes if s == ICD10CM]
    others = [f"{s}|{c}" for s, c in condition.codes if s != ICD10CM]
    if len(icd) + len(others) <= MAX_EXPANDED:
        return [("code", ",".join(f"{s}|{c}" for s, c in condition.codes))]
    # Same matches as the list: a descendant's dotted code begins with its ancestor's (service.code_expansion).
    searches = [("code:below", ",".join(f"{ICD10CM}|{r}" for r in condition.icd_roots))]
    return searches + ([("code", ",".join(others))] if others else [])


def _diagnosis_holds(body: Mapping[str, Any]) -> bool:
    status = body.get("verificationStatus")
    codings = status.get("coding") if isinstance(status, dict) else None
    first = codings[0] if isinstance(codings, list) and codings and isinstance(codings[0], dict) else {}
    return first.get("code") not in NOT_A_DIAGNOSIS


def condition_patients(env: Services, guard: Guard, condition: ResolvedCodes) -> list[str]:
    """Distinct ids of patients with an active Condition coded with the resolved codes that the caller may see.

    Conditions are searched under the caller's plan (scopes, compartment) and each is admitted by the guard;
    one withheld by scopes or governance (labels, consent, care team) adds no patient. More than
    MAX_CONDITION_PATIENTS patients is InvalidInput: the Patient search takes the ids as one `_id` list.
    """
    found: set[str] = set()
    for param, value in _condition_searches(condition):
        base = parse_search(
            "Condition",
            [(param, value), ("clinical-status", ACTIVE_CLINICAL), ("_sort", "_id"), ("_count", str(_PAGE))],
        )
        query = plan_query(guard, base)
        offset: int | None = 0
        while offset is not None:
            page = env.store.search(replace(query, offset=offset))
            for stored in page.matches:
                if not _diagnosis_holds(stored.body):
                    continue
                subject = stored.body.get("subject")
                ref = subject.get("reference") if isinstance(subject, dict) else None
                if not isinstance(ref, str) or not ref.startswith("Patient/"):
                    continue
                if guard.admit(stored, "s") is not None:
                    found.add(ref.removeprefix("Patient/"))
            if len(found) > MAX_CONDITION_PATIENTS:
                raise InvalidInput(
                    "condition",
                    f"more than {MAX_CONDITION_PATIENTS} patients have this condition",
                    "add filters that narrow it: a more specific condition code (e.g. a subcategory such as "
                    "E11.9), or use run_report/query_sql for practice-wide lists and counts",
                )
            offset = page.next_offset
    return sorted(found)


def read_patient(env: Services, guard: Guard, trail: Trail, patient_id: str) -> Admitted:
    """The Patient a patient-level use case is about; missing and not permitted look the same."""
    check_id(patient_id, "patient_id")
    guard.plan("Patient", "r")
    stored = env.store.read("Patient", patient_id)
    if stored is None:
        raise not_found("Patient", patient_id)
    decision, patients = guard.check(stored, "r")
    if not decision.allowed:
        trail.masked_denial = decision.reason
        raise not_found("Patient", patient_id)
    trail.touch(stored.ref, patients)
    return Admitted(stored, patients)


@dataclass(frozen=True, slots=True)
class Section:
    """One part of a patient summary: which resources, how many to fetch, how many to show."""

    key: str
    resource_type: str
    params: tuple[tuple[str, str], ...]
    limit: int
    fetch: int = 0
    latest_per_code: bool = False


def _sections(today: str) -> tuple[Section, ...]:
    return (
        Section("active_conditions", "Condition", (("clinical-status", "active"),), 25),
        Section("active_medications", "MedicationRequest", (("status", "active"),), 25),
        Section("allergies", "AllergyIntolerance", (), 20),
        Section("latest_vitals", "Observation", (("category", "vital-signs"), ("_sort", "-date")), 12, 100, True),
        Section("latest_labs", "Observation", (("category", "laboratory"), ("_sort", "-date")), 20, 100, True),
        Section("upcoming_appointments", "Appointment", (("date", f"ge{today}"), ("_sort", "date")), 5),
        Section("recent_appointments", "Appointment", (("date", f"lt{today}"), ("_sort", "-date")), 5),
        Section("recent_encounters", "Encounter", (("_sort", "-date"),), 5),
        Section("immunizations", "Immunization", (("_sort", "-date"),), 10),
    )


def _code_key(body: Mapping[str, Any]) -> str:
    code = body.get("code")
    if isinstance(code, dict):
        for coding in code.get("coding") or ():
            if isinstance(coding, dict) and coding.get("code"):
                return f"{coding.get('system', '')}|{coding['code']}"  # system|code
        text = code.get("text")
        if isinstance(text, str):
            return text
    return str(body.get("id", ""))


def _section(env: Services, guard: Guard, trail: Trail, patient_id: str, spec: Section) -> dict[str, Any]:
    fetch = spec.fetch or spec.limit
    query = parse_search(spec.resource_type, [*spec.params, ("_count", str(fetch))])
    query = plan_query(guard, query)
    # The summary is about one patient: narrow to its compartment whatever the plan allowed.
    query = replace(query, compartment=patient_id)
    page = env.store.search(query)
    total = len(page.matches)
    if page.next_offset is not None:
        # Only a full page needs a count query; a short page is its own exact total.
        counted = env.store.search(replace(query, count=0, total=True, sort=()))
        total = counted.total if counted.total is not None else total
    admitted, _ = guard.admit_all(page.matches, "s")
    if spec.latest_per_code:
        seen: set[str] = set()
        latest: list[Admitted] = []
        for item in admitted:
            key = _code_key(item.stored.body)
            if key not in seen:
                seen.add(key)
                latest.append(item)
        admitted = latest
    shown = admitted[: spec.limit]
    for item in shown:
        trail.touch(item.ref, item.patients)
    return {
        "items": [fact(guard.project(a.stored).body) for a in shown],
        "total": total,
        "omitted": max(0, total - len(shown)),
    }


def patient_summary(env: Services, guard: Guard, trail: Trail, *, patient_id: str) -> dict[str, Any]:
    """Demographics plus bounded clinical sections; sections the scopes do not reach are listed, not errors."""
    trail.resource_type = "Patient"
    patient = read_patient(env, guard, trail, patient_id)
    today = datetime.now(UTC).date().isoformat()
    sections: dict[str, Any] = {}
    withheld: list[dict[str, str]] = []
    for spec in _sections(today):
        if not guard.may(spec.resource_type, "s"):
            withheld.append({"section": spec.key, "reason": f"no scope allows searching {spec.resource_type}"})
            continue
        sections[spec.key] = _section(env, guard, trail, patient_id, spec)
    return {
        "patient": guard.present(patient.stored, "compact"),
        "as_of": today,
        "sections": sections,
        "withheld_sections": withheld,
        "note": "Each item is a fact row (ref, date, code as system|code, display, value, status). Sections are "
        "bounded: 'total' counts matching records, 'omitted' those not shown (older values per code, or beyond "
        "the limit). Use read_resource with an item's ref for the full record, search_resources or "
        "patient_everything for more.",
        **guard.notes(),
    }
