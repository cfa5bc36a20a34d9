"""The policy matrix: role x label x consent x tool -> visible, withheld (counted) or refused (with a reason)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from governance_support import Facts, ctx, who

from fhirgate.errors import AccessDenied, InvalidInput, NotFound
from fhirgate.service.gateway import Gateway


def _labelled(facts: Facts, rtype: str, label: str | None = None) -> str:
    refs = [r for r, codes in facts.labelled.items() if r.startswith(rtype + "/") and (label is None or label in codes)]
    assert refs, f"the demo has a labelled {rtype}"
    return sorted(refs)[0]


def _patient_with_labelled(facts: Facts) -> tuple[str, str]:
    """A patient (not opted out) and one of their labelled resources."""
    for ref in sorted(facts.labelled):
        pats = facts.patients_of.get(ref, set()) - facts.optouts
        if len(pats) == 1 and not ref.startswith("Patient/"):
            return next(iter(pats)), ref
    raise AssertionError("no labelled resource of a single patient")


STAFF = who()  # no role claim, no fhirUser: the default policy's practice_staff


# -- labels -------------------------------------------------------------------------------------------------


def test_staff_search_withholds_labelled_resources_and_counts_them(gateway: Gateway, facts: Facts) -> None:
    patient, ref = _patient_with_labelled(facts)
    rtype = ref.split("/")[0]
    out = gateway.search_resources(ctx(STAFF), rtype, {"patient": patient}, count=100)
    ids = {e["id"] for e in out["entries"]}
    assert ref.split("/")[1] not in ids
    assert out["withheld"]["by_category"].get("sensitivity", 0) >= 1
    assert "withheld" in out["withheld"]["note"]
    assert out["page"]["total"] is None  # a total would count the withheld items


def test_staff_read_of_labelled_resource_is_not_found(gateway: Gateway, facts: Facts) -> None:
    _, ref = _patient_with_labelled(facts)
    rtype, rid = ref.split("/")
    with pytest.raises(NotFound):
        gateway.read_resource(ctx(STAFF), rtype, rid)
    record = gateway.audit_sink.records[-1] if hasattr(gateway.audit_sink, "records") else None
    assert record is None or (record.reason and record.reason.startswith("label"))


def test_patient_sees_own_sensitive_data_but_not_v(gateway: Gateway, facts: Facts) -> None:
    patient, ref = _patient_with_labelled(facts)
    me = who("launch/patient patient/*.rs", patient=patient)
    rtype, rid = ref.split("/")
    codes = facts.labelled[ref]
    if codes & {"V", "SDV"}:
        with pytest.raises(NotFound):
            gateway.read_resource(ctx(me), rtype, rid)
    else:
        assert gateway.read_resource(ctx(me), rtype, rid)["ref"] == ref


def test_wrong_purpose_is_refused(gateway: Gateway) -> None:
    with pytest.raises(AccessDenied) as info:
        gateway.whoami(ctx(who(purpose=("HMARKT",))))
    assert info.value.reason == "purpose.not_allowed"


# -- consent --------------------------------------------------------------------------------------------------


def test_opted_out_patient_is_out_of_every_read_path(gateway: Gateway, facts: Facts) -> None:
    out_id = sorted(facts.optouts)[0]
    with pytest.raises(NotFound):
        gateway.patient_summary(ctx(STAFF), out_id)
    with pytest.raises(NotFound):
        gateway.read_resource(ctx(STAFF), "Patient", out_id)
    with pytest.raises(NotFound):
        gateway.patient_everything(ctx(STAFF), out_id)
    found = gateway.search_resources(ctx(STAFF), "Encounter", {"patient": out_id}, count=50)
    assert found["entries"] == [] and found["withheld"]["by_category"] == {"consent": found["withheld"]["count"]}
    family = facts.bodies[f"Patient/{out_id}"]["name"][0]["family"]
    cards = gateway.find_patients(ctx(STAFF), filters={"family": family}, count=50)["patients"]
    assert out_id not in {c["id"] for c in cards}


def test_opted_out_patient_is_out_of_sql_and_reports(gateway: Gateway, facts: Facts) -> None:
    ids = ", ".join(f"'{p}'" for p in sorted(facts.optouts))
    for view in ("patient", "appointment", "observation", "condition", "claim_line"):
        column = "id" if view == "patient" else "patient_id"
        rows = gateway.query_sql(ctx(STAFF), f"SELECT count(*) FROM {view} WHERE {column} IN ({ids})")["rows"]
        assert rows == [[0]], view
    report = gateway.run_report(ctx(STAFF), "patients_not_seen", {"today": "2026-11-21", "limit": 200})
    assert not facts.optouts & {r["patient_id"] for r in report["rows"]}


# -- roles: types, tools, projections ------------------------------------------------------------------------


def test_front_desk_sees_scheduling_not_diagnoses(gateway: Gateway, facts: Facts) -> None:
    desk = who(role="front_desk")
    with pytest.raises(AccessDenied) as info:
        gateway.search_resources(ctx(desk), "Condition", {}, count=5)
    assert info.value.reason == "role.type_not_allowed"
    appts = gateway.search_resources(ctx(desk), "Appointment", {}, count=20, format="fhir")
    assert appts["entries"]
    assert all("reasonCode" not in e and "comment" not in e for e in appts["entries"])
    assert "Appointment" in appts.get("omitted_elements", {}).get("by_type", {}) or not any(
        "reasonCode" in b or "comment" in b for r, b in facts.bodies.items() if r.startswith("Appointment/")
    )
    summary_denied = pytest.raises(AccessDenied)
    with summary_denied:
        gateway.patient_summary(ctx(desk), sorted(facts.care_team)[0])


def test_billing_cannot_read_clinical_types(gateway: Gateway) -> None:
    with pytest.raises(AccessDenied):
        gateway.search_resources(ctx(who(role="billing")), "Observation", {}, count=1)
    assert gateway.search_resources(ctx(who(role="billing")), "Claim", {}, count=1)["entries"]


def test_analyst_gets_no_identified_tools(gateway: Gateway, facts: Facts) -> None:
    analyst = who(role="analyst")
    with pytest.raises(AccessDenied) as info:
        gateway.find_patients(ctx(analyst), filters={"name": "a"})
    assert info.value.reason == "role.tool_not_allowed"
    with pytest.raises(AccessDenied) as info:
        gateway.patient_summary(ctx(analyst), sorted(facts.care_team)[0])
    assert info.value.reason == "role.tool_not_allowed"
    assert "deidentified" in gateway.query_sql(ctx(analyst), "SELECT count(*) FROM patient")


def test_unknown_or_mismatched_role_claims_are_refused(gateway: Gateway, facts: Facts) -> None:
    with pytest.raises(AccessDenied) as info:
        gateway.whoami(ctx(who(role="superuser")))
    assert info.value.reason == "role.unknown"
    patient = sorted(facts.care_team)[0]
    with pytest.raises(AccessDenied) as info:
        gateway.whoami(ctx(who("launch/patient patient/*.rs", role="clinician", patient=patient)))
    assert info.value.reason == "role.patient_context_requires_own_record"


# -- care team and break-glass --------------------------------------------------------------------------------


def test_clinician_sees_only_their_care_team(gateway: Gateway, facts: Facts) -> None:
    doc = who(fhir_user=facts.practitioner, sub="doc-1")
    mine = sorted(facts.care_team - facts.optouts)[0]
    others = sorted({r.split("/")[1] for r in facts.bodies if r.startswith("Patient/")} - facts.care_team)
    assert others, "some patients are outside this practitioner's care team"
    assert gateway.patient_summary(ctx(doc), mine)["patient"]
    with pytest.raises(NotFound):
        gateway.patient_summary(ctx(doc), others[0])
    found = gateway.search_resources(ctx(doc), "Patient", {}, count=100)
    ids = {e["id"] for e in found["entries"]}
    assert ids <= facts.care_team and ids
    assert found["withheld"]["by_category"].get("care-team", 0) >= 1
    sql = gateway.query_sql(ctx(doc), "SELECT DISTINCT patient_id FROM appointment")["rows"]
    assert {r[0] for r in sql} <= facts.care_team


def test_break_glass_opens_care_team_and_is_flagged(gateway: Gateway, facts: Facts) -> None:
    doc = who(fhir_user=facts.practitioner, sub="doc-2")
    other = sorted(
        {r.split("/")[1] for r in facts.bodies if r.startswith("Patient/")} - facts.care_team - facts.optouts
    )[0]
    with pytest.raises(Exception):  # noqa: B017 - too short a reason
        gateway.break_glass(ctx(doc), "urgent")
    opened = gateway.break_glass(ctx(doc), "unconscious patient in the waiting room, need allergies")
    assert opened["break_glass"] and opened["opens"]["care_team"]
    c = ctx(doc)
    assert gateway.patient_summary(c, other)["patient"]
    assert c.break_glass and c.purpose == "ETREAT"
    # Consent still applies under break-glass.
    with pytest.raises(NotFound):
        gateway.patient_summary(ctx(doc), sorted(facts.optouts)[0])
    with pytest.raises(AccessDenied) as info:
        gateway.break_glass(ctx(who(role="front_desk")), "front desk wants to see everything now")
    assert info.value.reason == "role.tool_not_allowed"


def _emitted(out: Any, found: set[str]) -> None:
    """Every resource a tool result hands out, as `Type/id`, `id` or a view row's id."""
    if isinstance(out, dict):
        if isinstance(out.get("resourceType"), str) and isinstance(out.get("id"), str):
            found.add(f"{out['resourceType']}/{out['id']}")
        if isinstance(out.get("ref"), str) and set(out) - {"ref", "display", "type", "identifier"}:
            found.add(out["ref"])  # an item (fact row, grep hit), not a compact Reference {"ref", "display"}
        if "columns" in out and "rows" in out and out["columns"] and out["columns"][0]["name"] == "id":
            found.update(f"*/{row[0]}" for row in out["rows"])
        for value in out.values():
            _emitted(value, found)
    elif isinstance(out, list):
        for value in out:
            _emitted(value, found)


def test_no_withheld_item_in_any_output_for_staff(gateway: Gateway, facts: Facts) -> None:
    """Every tool a practice-wide staff principal can call: no labelled or opted-out resource is handed out,
    and the coded text of withheld Conditions (e.g. a substance-use diagnosis) appears nowhere."""
    c = lambda: ctx(STAFF)  # noqa: E731
    patients = sorted(r.split("/")[1] for r in facts.bodies if r.startswith("Patient/"))
    outputs: list[Any] = []
    for rtype in ("Condition", "Observation", "Encounter", "Claim", "DocumentReference", "Procedure", "Patient"):
        outputs.append(gateway.search_resources(c(), rtype, {}, count=100, format="fhir"))
        outputs.append(gateway.search_resources(c(), rtype, {}, count=100))
    outputs.append(
        gateway.search_resources(c(), "Appointment", {"_include": "Appointment:reason-reference"}, count=100)
    )
    for pid in patients[:25]:
        try:
            outputs.append(gateway.patient_summary(c(), pid))
            outputs.append(gateway.patient_everything(c(), pid, count=100, format="fhir"))
            outputs.append(gateway.grep_record(c(), pid, "a", max_hits=100))
        except NotFound:
            assert pid in facts.optouts
    for view in ("condition", "observation", "claim_line", "encounter", "medication_request", "patient"):
        cursor = None
        while True:
            page = gateway.query_sql(c(), f"SELECT * FROM {view}", max_rows=200, cursor=cursor)
            outputs.append(page)
            cursor = page["page"]["next_cursor"]
            if cursor is None:
                break
    outputs.append(gateway.run_report(c(), "service_volume", {"today": "2026-11-21", "period": "this_year"}))
    found: set[str] = set()
    _emitted(outputs, found)
    hidden = {r for r in facts.bodies if not facts.visible_to_staff(r)}
    hidden_ids = {r.split("/")[1] for r in hidden}
    bad = sorted(found & hidden)[:3]
    assert found and not bad, [(r, facts.labelled.get(r), facts.patients_of.get(r)) for r in bad]
    assert not {f.split("/")[1] for f in found if f.startswith("*/")} & hidden_ids
    assert not facts.optouts & {r.get("patient_id") for o in outputs if isinstance(o, dict) for r in o.get("rows", [])
                                if isinstance(r, dict)}  # fmt: skip
    text = orjson.dumps(outputs).decode()
    visible_text = orjson.dumps([b for r, b in facts.bodies.items() if facts.visible_to_staff(r)]).decode()
    secret = {
        coding["display"]
        for r in hidden
        if r.startswith("Condition/")
        for coding in facts.bodies[r].get("code", {}).get("coding", [])
        if coding.get("display") and coding["display"] not in visible_text
    }
    assert secret, "the demo has withheld diagnoses to look for"
    assert not [d for d in secret if d in text]


def test_sql_views_follow_role_types_and_projections(gateway: Gateway) -> None:
    billing = who(role="billing")
    views = {v["name"]: v for v in gateway.list_views(ctx(billing))["views"]}
    assert not views["observation"]["available"] and "may not see" in views["observation"]["access"]
    with pytest.raises(AccessDenied):
        gateway.query_sql(ctx(billing), "SELECT count(*) FROM observation")
    patient = views["patient"]
    # Billing's Patient projection keeps name, telecom, address, birthDate... but not generalPractitioner.
    assert "general_practitioner_id" not in patient["column_names"]
    assert "general_practitioner_id" in patient["omitted_columns"]["names"]
    with pytest.raises((AccessDenied, InvalidInput)):
        gateway.query_sql(ctx(billing), "SELECT general_practitioner_id FROM patient")
    assert gateway.query_sql(ctx(billing), "SELECT count(*) FROM claim_line")["rows"][0][0] > 0


def test_record_free_text_is_fenced_and_injections_flagged(gateway: Gateway, facts: Facts) -> None:
    """Free text comes back fenced; the demo's injected notes are flagged wherever a tool returns them."""
    described = sorted(
        r
        for r, b in facts.bodies.items()
        if r.startswith("Appointment/") and b.get("description") and facts.visible_to_staff(r)
    )
    rtype, rid = described[0].split("/")
    for fmt in ("compact", "fhir"):
        out = gateway.read_resource(ctx(STAFF), rtype, rid, format=fmt)
        assert out["resource"]["description"].startswith("<<<UNTRUSTED-DATA id=") and out["untrusted_text"]
    injected = sorted(
        r
        for r, b in facts.bodies.items()
        if r.startswith("DocumentReference/") and facts.visible_to_staff(r) and _has_injection(b)
    )
    assert injected, "the demo has visible notes with prompt injection"
    for ref in injected:
        t, i = ref.split("/")
        read = gateway.read_resource(ctx(STAFF), t, i, format="fhir")
        assert read["flagged_text"] and read["flagged_text"][0]["ref"] == ref
        patient = sorted(facts.patients_of[ref])[0]
        everything = gateway.patient_everything(ctx(STAFF), patient, types=["DocumentReference"], count=100)
        assert ref in {f["ref"] for f in everything["flagged_text"]}
        grep = gateway.grep_record(ctx(STAFF), patient, "instructions|override|disregard", regex=True)
        assert any(h["flagged"] and h["ref"] == ref for h in grep["hits"])
    clean = gateway.search_resources(ctx(STAFF), "Observation", {}, count=100)
    assert "flagged_text" not in clean


def _has_injection(body: dict[str, Any]) -> bool:
    from fhirgate.demo.notes import INJECTIONS
    from fhirgate.text.attachments import resource_texts

    text = " ".join(t for _, t in resource_texts(body))
    return any(inj.split(":")[0][:30] in text for inj in INJECTIONS)


def test_break_glass_is_per_principal_and_expires(
    gateway: Gateway, facts: Facts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Emergency access opened by one clinician neither reaches a colleague nor outlives its minutes."""
    from fhirgate.service import governance as gov_module

    other = sorted(
        {r.split("/")[1] for r in facts.bodies if r.startswith("Patient/")} - facts.care_team - facts.optouts
    )[0]
    opener = who(fhir_user=facts.practitioner, sub="doc-expiry")
    colleague = who(fhir_user=facts.practitioner, sub="doc-colleague")
    opened = gateway.break_glass(ctx(opener), "cardiac arrest in the car park, need the medication list")
    assert gateway.patient_summary(ctx(opener), other)["patient"]
    with pytest.raises(NotFound):
        gateway.patient_summary(ctx(colleague), other)
    minutes = gateway.governance.role_of(opener).break_glass_minutes
    now = gov_module.time.time()
    monkeypatch.setattr(gov_module.time, "time", lambda: now + minutes * 60 + 1)
    assert opened["expires"]
    with pytest.raises(NotFound):
        gateway.patient_summary(ctx(opener), other)


def test_label_tables_and_deid_function_are_unreachable_from_sql(gateway: Gateway) -> None:
    """The per-connection temp tables of labelled rowids serve the inner views only: a query cannot read them
    (which would list what is withheld), whether named plainly, schema-qualified or through a CTE."""
    from fhirgate.analytics.sql.policy import labelled_table
    from fhirgate.core.policy.labels import SENSITIVE_DEFAULT

    gateway.query_sql(ctx(STAFF), "SELECT count(*) FROM appointment")  # the tables now exist on the connection
    name = labelled_table("Appointment", frozenset(SENSITIVE_DEFAULT))
    for sql in (
        f"SELECT count(*) FROM {name}",
        f"SELECT count(*) FROM temp.{name}",
        f"WITH x AS (SELECT rid FROM temp.{name}) SELECT count(*) FROM x",
        f"SELECT count(*) FROM appointment WHERE 1 IN (SELECT 1 FROM temp.{name})",
    ):
        # AccessDenied (the authorizer refused an existing table), not InvalidInput (no such table): the name
        # is right and the table is there.
        with pytest.raises(AccessDenied):
            gateway.query_sql(ctx(STAFF), sql)
