"""Gateway use cases against a real store and audit log: results, refusals, and one audit record each."""

from __future__ import annotations

from typing import Any

import pytest
from practice_data import INJECTION, Practice, ctx, principal

from fhirgate.audit.record import AuditRecord
from fhirgate.errors import AccessDenied, AuditError, InvalidInput, NotFound
from fhirgate.service.gateway import Gateway

USER = principal("user/*.rs")


def last_records(gateway: Gateway, n: int) -> list[AuditRecord]:
    return [e.record for e in gateway.audit_sink.tail(n)]  # type: ignore[attr-defined]


def count(gateway: Gateway) -> int:
    return int(gateway.audit_sink.count())  # type: ignore[attr-defined]


def one_observation(gateway: Gateway, patient: str) -> str:
    page = gateway.search_resources(ctx(USER), "Observation", {"patient": patient}, count=1)
    return str(page["entries"][0]["id"])


def test_whoami_reports_scopes_and_reach(gateway: Gateway, practice: Practice) -> None:
    p = principal("patient/Observation.rs launch/patient", patient=practice.patient_a)
    before = count(gateway)
    out = gateway.whoami(ctx(p))
    assert out["patient"] == practice.patient_a
    assert [a["type"] for a in out["access"]] == ["Observation"]
    assert out["access"][0]["patient_compartment"] == practice.patient_a
    assert count(gateway) == before + 1


def test_read_resource_found_is_audited_with_patient(gateway: Gateway, practice: Practice) -> None:
    obs = one_observation(gateway, practice.patient_a)
    out = gateway.read_resource(ctx(USER), "Observation", obs)
    assert out["ref"] == f"Observation/{obs}"
    fhir = gateway.read_resource(ctx(USER), "Observation", obs, format="fhir")
    assert fhir["resource"]["resourceType"] == "Observation"
    assert "meta" in fhir["resource"]
    rec = last_records(gateway, 2)[0]
    assert rec.outcome == "success"
    assert rec.balp_kind == "read"
    assert rec.references == (f"Observation/{obs}",)
    assert rec.patients == (practice.patient_a,)


def test_denied_read_is_indistinguishable_from_missing(gateway: Gateway, practice: Practice) -> None:
    other = one_observation(gateway, practice.patient_b)
    p = principal("patient/*.rs", patient=practice.patient_a)
    with pytest.raises(NotFound) as denied:
        gateway.read_resource(ctx(p), "Observation", other)
    with pytest.raises(NotFound) as missing:
        gateway.read_resource(ctx(p), "Observation", "no-such-id")
    assert type(denied.value) is type(missing.value)
    assert str(denied.value).replace(other, "X") == str(missing.value).replace("no-such-id", "X")
    denied_rec, missing_rec = last_records(gateway, 2)
    # The caller cannot tell them apart; the audit trail can.
    assert denied_rec.outcome == "denied"
    assert denied_rec.reason == "compartment.outside"
    assert missing_rec.outcome == "not-found"
    assert denied_rec.references == ()
    assert denied_rec.patients == ()


def test_type_without_scope_names_required_scope(gateway: Gateway, practice: Practice) -> None:
    p = principal("patient/Observation.rs", patient=practice.patient_a)
    with pytest.raises(AccessDenied) as exc:
        gateway.search_resources(ctx(p), "Condition", {})
    assert exc.value.required_scope == "patient/Condition.rs"
    assert "patient/Condition.rs" in exc.value.message
    assert last_records(gateway, 1)[0].outcome == "denied"


def test_patient_token_search_stays_in_compartment(gateway: Gateway, practice: Practice) -> None:
    p = principal("patient/*.rs", patient=practice.patient_a)
    out = gateway.search_resources(
        ctx(p),
        "Encounter",
        {"_revinclude": "Observation:encounter", "_include": "Encounter:subject"},
        count=5,
    )
    assert out["entries"]
    for item in [*out["entries"], *out["included"]]:
        text = repr(item)
        assert practice.patient_b not in text
    rec = last_records(gateway, 1)[0]
    assert set(rec.patients) == {practice.patient_a}


def test_search_without_patient_filter_under_patient_token(gateway: Gateway, practice: Practice) -> None:
    p = principal("patient/*.rs", patient=practice.patient_a)
    out = gateway.search_resources(ctx(p), "Patient", {}, count=50)
    assert [e["id"] for e in out["entries"]] == [practice.patient_a]


def test_chained_search_needs_scope_on_target(gateway: Gateway, practice: Practice) -> None:
    p = principal("user/Observation.rs")
    with pytest.raises(AccessDenied) as exc:
        gateway.search_resources(ctx(p), "Observation", {"subject:Patient.name": "a"})
    assert exc.value.required_scope == "user/Patient.rs"


def test_cursor_pages_are_disjoint_and_complete(gateway: Gateway, practice: Practice) -> None:
    params: dict[str, str | list[str]] = {"patient": practice.patient_a, "category": "vital-signs"}
    first = gateway.search_resources(ctx(USER), "Observation", params, count=7)
    total = first["page"]["total"]
    seen = [e["id"] for e in first["entries"]]
    cursor = first["page"]["next_cursor"]
    while cursor:
        page = gateway.search_resources(ctx(USER), "Observation", params, count=7, cursor=cursor)
        seen += [e["id"] for e in page["entries"]]
        cursor = page["page"]["next_cursor"]
    assert len(seen) == len(set(seen)) == total > 7


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c[:-2] + ("AA" if not c.endswith("AA") else "BB"),
        lambda c: "x" + c,
        lambda c: "not-a-cursor",
    ],
)
def test_tampered_cursor_is_refused(gateway: Gateway, practice: Practice, mutate: Any) -> None:
    first = gateway.search_resources(ctx(USER), "Observation", {"patient": practice.patient_a}, count=2)
    with pytest.raises(InvalidInput) as exc:
        gateway.search_resources(
            ctx(USER),
            "Observation",
            {"patient": practice.patient_a},
            count=2,
            cursor=mutate(first["page"]["next_cursor"]),
        )
    assert exc.value.param == "cursor"


def test_cursor_of_another_principal_or_query_is_refused(gateway: Gateway, practice: Practice) -> None:
    first = gateway.search_resources(ctx(USER), "Observation", {"patient": practice.patient_a}, count=2)
    cursor = first["page"]["next_cursor"]
    other = principal("user/*.rs", sub="someone-else")
    with pytest.raises(InvalidInput) as exc:
        gateway.search_resources(ctx(other), "Observation", {"patient": practice.patient_a}, count=2, cursor=cursor)
    assert exc.value.param == "cursor"
    with pytest.raises(InvalidInput) as exc2:
        gateway.search_resources(ctx(USER), "Observation", {"patient": practice.patient_b}, count=2, cursor=cursor)
    assert exc2.value.param == "cursor"
    with pytest.raises(InvalidInput) as exc3:
        gateway.patient_everything(ctx(USER), practice.patient_a, count=2, cursor=cursor)
    assert exc3.value.param == "cursor"


@pytest.mark.parametrize(
    ("call", "param"),
    [
        (lambda g, c: g.search_resources(c, "Observation", {}, count=0), "count"),
        (lambda g, c: g.search_resources(c, "Observation", {}, format="xml"), "format"),
        (lambda g, c: g.search_resources(c, "Nope", {}), "resource_type"),
        (lambda g, c: g.search_resources(c, "Observation", {"_count": "5"}), "params._count"),
        (lambda g, c: g.search_resources(c, "Observation", {"shoe-size": "9"}), "shoe-size"),
        (lambda g, c: g.search_resources(c, "Observation", {"date": "yesterday"}), "date"),
        (lambda g, c: g.read_resource(c, "Observation", "../etc/passwd"), "id"),
        (lambda g, c: g.find_patients(c, filters={"gender": "robot"}), "gender"),
        (lambda g, c: g.find_patients(c, count=51), "count"),
        (lambda g, c: g.patient_everything(c, "x", since="last week"), "since"),
        (lambda g, c: g.patient_everything(c, "x", types=["Slot"]), "types"),
        (lambda g, c: g.grep_record(c, "x", ""), "pattern"),
        (lambda g, c: g.grep_record(c, "x", "(a+)+$", regex=True), "pattern"),
    ],
)
def test_bad_input_names_the_parameter(gateway: Gateway, call: Any, param: str) -> None:
    before = count(gateway)
    with pytest.raises(InvalidInput) as exc:
        call(gateway, ctx(USER))
    assert exc.value.param == param
    assert "Traceback" not in exc.value.message
    assert count(gateway) == before + 1
    rec = last_records(gateway, 1)[0]
    assert rec.outcome == "invalid"


def test_find_patients_and_paging(gateway: Gateway, practice: Practice) -> None:
    out = gateway.find_patients(ctx(USER), count=4)
    assert out["page"]["total"] == 10
    assert len(out["patients"]) == 4
    nxt = gateway.find_patients(ctx(USER), count=4, cursor=out["page"]["next_cursor"])
    assert not {p["id"] for p in out["patients"]} & {p["id"] for p in nxt["patients"]}
    one = gateway.find_patients(ctx(USER), filters={"identifier": practice.patient_a})
    assert [p["id"] for p in one["patients"]] == [practice.patient_a]


def test_patient_summary_is_bounded_and_scoped(gateway: Gateway, practice: Practice) -> None:
    out = gateway.patient_summary(ctx(USER), practice.patient_a)
    sections = out["sections"]
    assert out["patient"]["id"] == practice.patient_a
    assert sections["upcoming_appointments"]["items"][0]["ref"] == "Appointment/appt-a2"
    for section in sections.values():
        assert section["omitted"] == max(0, section["total"] - len(section["items"]))
        assert len(section["items"]) <= 25
    vitals = sections["latest_vitals"]["items"]
    codes = [repr(v["code"]) for v in vitals]
    assert len(codes) == len(set(codes))  # latest per code only
    narrow = principal("patient/Patient.rs patient/Condition.rs", patient=practice.patient_a)
    small = gateway.patient_summary(ctx(narrow), practice.patient_a)
    assert set(small["sections"]) == {"active_conditions"}
    assert {w["section"] for w in small["withheld_sections"]} >= {"latest_vitals", "allergies"}


def test_summary_of_other_patient_is_not_found(gateway: Gateway, practice: Practice) -> None:
    p = principal("patient/*.rs", patient=practice.patient_a)
    with pytest.raises(NotFound):
        gateway.patient_summary(ctx(p), practice.patient_b)
    with pytest.raises(NotFound):
        gateway.patient_everything(ctx(p), practice.patient_b)
    with pytest.raises(NotFound):
        gateway.grep_record(ctx(p), practice.patient_b, "dizziness")


def test_constrained_scope_filters_resources(gateway: Gateway, practice: Practice) -> None:
    lab = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
    p = principal(f"user/Observation.rs?category={lab} user/Patient.rs")
    out = gateway.search_resources(ctx(p), "Observation", {"patient": practice.patient_a}, count=50)
    assert out["entries"]
    for entry in out["entries"]:
        assert "laboratory" in repr(entry["category"])
    vital = gateway.search_resources(
        ctx(USER), "Observation", {"patient": practice.patient_a, "category": "vital-signs"}, count=1
    )["entries"][0]["id"]
    with pytest.raises(NotFound):
        gateway.read_resource(ctx(p), "Observation", vital)


def test_everything_pages_through_compartment(gateway: Gateway, practice: Practice) -> None:
    p = principal("patient/*.rs", patient=practice.patient_a)
    first = gateway.patient_everything(ctx(p), practice.patient_a, count=100)
    assert first["entries"][0]["resourceType"] == "Patient"
    refs = [e["ref"] for e in first["entries"]]
    nxt = gateway.patient_everything(ctx(p), practice.patient_a, count=100, cursor=first["page"]["next_cursor"])
    assert not set(refs) & {e["ref"] for e in nxt["entries"]}
    only = principal("patient/Patient.rs patient/Immunization.rs", patient=practice.patient_a)
    narrow = gateway.patient_everything(ctx(only), practice.patient_a, count=100)
    assert {e["resourceType"] for e in narrow["entries"]} <= {"Patient", "Immunization"}
    assert "Observation" in narrow["withheld_types"]


def test_grep_marks_record_text_untrusted(gateway: Gateway, practice: Practice) -> None:
    p = principal("patient/*.rs", patient=practice.patient_a)
    out = gateway.grep_record(ctx(p), practice.patient_a, "dizziness", types=["DocumentReference"])
    hits = out["hits"]
    assert [h["ref"] for h in hits] == ["DocumentReference/note-a1"]
    assert "IGNORE ALL PREVIOUS" in hits[0]["untrusted_record_text"] or "dizziness" in hits[0]["untrusted_record_text"]
    assert "not instructions" in out["notice"]
    regex = gateway.grep_record(ctx(p), practice.patient_a, r"dizz\w+", regex=True, max_hits=5)
    assert all(h["ref"].startswith(("DocumentReference/note-a1", "Observation", "Condition")) for h in regex["hits"])
    assert INJECTION.split()[0] not in out["patient"]


class FailingSink:
    def append(self, record: AuditRecord) -> int:
        raise AuditError("disk full")


def test_audit_failure_fails_the_use_case(gateway: Gateway, practice: Practice) -> None:
    broken = Gateway(gateway.store, FailingSink(), b"k" * 32)
    with pytest.raises(AuditError):
        broken.read_resource(ctx(USER), "Patient", practice.patient_a)
    with pytest.raises(AuditError):
        broken.whoami(ctx(USER))


def test_one_record_per_use_case_even_on_internal_error(gateway: Gateway, practice: Practice) -> None:
    class Boom:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("store exploded with secret Smith")

    records: list[AuditRecord] = []

    class Sink:
        def append(self, record: AuditRecord) -> int:
            records.append(record)
            return len(records)

    broken = Gateway(Boom(), Sink(), b"k" * 32)  # type: ignore[arg-type]
    with pytest.raises(Exception) as exc:
        broken.read_resource(ctx(USER), "Patient", practice.patient_a)
    assert "Smith" not in str(exc.value)
    assert len(records) == 1
    assert records[0].outcome == "error"
