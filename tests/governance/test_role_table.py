"""The default policy as a table: role x tool -> allowed, or refused with which reason (calls made for real)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from governance_support import Facts, ctx, who

from fhirgate.core.policy.principal import Principal
from fhirgate.errors import AccessDenied
from fhirgate.service.gateway import Gateway

OK = "ok"
NO_TOOL = "role.tool_not_allowed"
NO_TYPE = "role.type_not_allowed"
NOT_DEID = "deid.tool_not_deidentified"
ROLES = ("practice_staff", "clinician", "front_desk", "billing", "analyst", "compliance", "patient")
# tool: expected outcome per role, in ROLES order (docs/policy.md is the prose of this table).
TABLE: dict[str, tuple[str, ...]] = {
    "whoami": (OK, OK, OK, OK, OK, OK, OK),
    "find_patients": (OK, OK, OK, OK, NO_TOOL, OK, NO_TOOL),
    "patient_summary": (OK, OK, NO_TOOL, NO_TOOL, NO_TOOL, NO_TOOL, OK),
    "search_condition": (OK, OK, NO_TYPE, NO_TYPE, NO_TOOL, NO_TYPE, OK),
    "search_claim": (OK, NO_TYPE, NO_TYPE, OK, NO_TOOL, NO_TYPE, OK),
    "query_sql": (OK, OK, NO_TOOL, OK, OK, NO_TOOL, OK),
    "run_report": (OK, OK, OK, OK, NOT_DEID, NO_TOOL, OK),
    "audit_disclosures": (NO_TOOL, NO_TOOL, NO_TOOL, NO_TOOL, NO_TOOL, OK, NO_TOOL),
}


def _principal(role: str, facts: Facts) -> Principal:
    patient = sorted(facts.care_team - facts.optouts)[0]
    if role == "practice_staff":
        return who(sub="t-staff")
    if role == "clinician":
        return who(fhir_user=facts.practitioner, sub="t-doc")
    if role == "patient":
        return who("launch/patient patient/*.rs", patient=patient, sub="t-pat")
    return who(role=role, sub=f"t-{role}")


def _calls(gw: Gateway, facts: Facts) -> dict[str, Callable[[Principal], Any]]:
    patient = sorted(facts.care_team - facts.optouts)[0]
    today = {"today": "2026-11-21"}
    return {
        "whoami": lambda p: gw.whoami(ctx(p)),
        "find_patients": lambda p: gw.find_patients(ctx(p), filters={"name": "a"}),
        "patient_summary": lambda p: gw.patient_summary(ctx(p), patient),
        "search_condition": lambda p: gw.search_resources(ctx(p), "Condition", {"patient": patient}),
        "search_claim": lambda p: gw.search_resources(ctx(p), "Claim", {"patient": patient}),
        "query_sql": lambda p: gw.query_sql(ctx(p), "SELECT count(*) FROM appointment"),
        "run_report": lambda p: gw.run_report(ctx(p), "no_show_summary", today),
        "audit_disclosures": lambda p: gw.audit_disclosures(ctx(p), patient),
    }


@pytest.mark.parametrize("role_index", range(len(ROLES)), ids=ROLES)
def test_role_by_tool(gateway: Gateway, facts: Facts, role_index: int) -> None:
    role = ROLES[role_index]
    p = _principal(role, facts)
    calls = _calls(gateway, facts)
    got: dict[str, str] = {}
    for tool in TABLE:
        try:
            calls[tool](p)
            got[tool] = OK
        except AccessDenied as exc:
            got[tool] = exc.reason
    assert got == {tool: row[role_index] for tool, row in TABLE.items()}
