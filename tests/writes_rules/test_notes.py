"""A clinical note as a draft DocumentReference: shape, validation, risk and validity."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from fhirgate.core.fhir.validate import validate_resource
from fhirgate.core.writes.notes import NOTE_TYPES, draft_note
from fhirgate.core.writes.risk import assess_one
from fhirgate.errors import InvalidInput

NOW = datetime(2026, 11, 20, 14, 5, 9, 123456, tzinfo=UTC)
SECRET = "secret-diagnosis"


def note(**kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"new_id": "note-1", "patient_id": "p1", "text": f"S: {SECRET}\nP: follow up", "now": NOW}
    args.update(kw)
    return draft_note(**args)


def decoded(doc: dict[str, Any]) -> str:
    return base64.b64decode(doc["content"][0]["attachment"]["data"]).decode("utf-8")


def test_minimal_note_is_a_valid_preliminary_progress_note() -> None:
    doc = note()
    assert doc == {
        "resourceType": "DocumentReference",
        "id": "note-1",
        "status": "current",
        "docStatus": "preliminary",
        "type": {
            "coding": [{"system": "http://loinc.org", "code": "11506-3", "display": "Progress note"}],
            "text": "Progress note",
        },
        "category": [
            {
                "coding": [
                    {
                        "system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
                        "code": "clinical-note",
                        "display": "Clinical Note",
                    }
                ],
                "text": "Clinical Note",
            }
        ],
        "subject": {"reference": "Patient/p1"},
        "date": "2026-11-20T14:05:09+00:00",
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain; charset=utf-8",
                    "data": doc["content"][0]["attachment"]["data"],
                    "title": "Progress note 2026-11-20",
                    "creation": "2026-11-20T14:05:09+00:00",
                }
            }
        ],
    }
    assert decoded(doc) == f"S: {SECRET}\nP: follow up"
    validate_resource(doc, mode="full")


def test_full_note_has_author_title_and_encounter() -> None:
    local = NOW.astimezone(timezone(timedelta(hours=-6)))
    doc = note(
        author="PractitionerRole/role-1", title="Visit note", note_type="consult", encounter_id="enc-9", now=local
    )
    assert doc["author"] == [{"reference": "PractitionerRole/role-1"}]
    assert doc["description"] == "Visit note" and doc["content"][0]["attachment"]["title"] == "Visit note"
    assert doc["context"] == {"encounter": [{"reference": "Encounter/enc-9"}]}
    assert doc["type"]["coding"][0]["code"] == "11488-4"
    assert doc["date"] == "2026-11-20T08:05:09-06:00"
    validate_resource(doc, mode="full")


def test_practitioner_author() -> None:
    assert note(author="Practitioner/dr-1")["author"] == [{"reference": "Practitioner/dr-1"}]


@pytest.mark.parametrize("kind", sorted(NOTE_TYPES))
def test_every_note_type_validates(kind: str) -> None:
    doc = note(note_type=kind)
    code, display = NOTE_TYPES[kind]
    assert doc["type"]["coding"][0] == {"system": "http://loinc.org", "code": code, "display": display}
    validate_resource(doc, mode="full")


def test_note_types_are_the_documented_loinc_codes() -> None:
    assert {k: v[0] for k, v in NOTE_TYPES.items()} == {
        "progress": "11506-3",
        "consult": "11488-4",
        "discharge": "18842-5",
        "history": "34117-2",
        "telephone": "34748-4",
        "other": "34109-9",
    }


def test_unknown_note_type_lists_the_known_ones() -> None:
    with pytest.raises(InvalidInput) as info:
        note(note_type="soap")
    assert info.value.param == "note_type"
    assert info.value.allowed == "progress, consult, discharge, history, telephone, other"


def test_draft_note_is_low_risk() -> None:
    risk = assess_one("create", "DocumentReference", None, note(author="Practitioner/dr-1", encounter_id="e1"))
    assert risk.level == "low" and risk.codes == ("risk.clinical_draft",) and risk.patients == ("p1",)


def test_a_final_note_would_be_high_risk() -> None:
    doc = note() | {"docStatus": "final"}
    assert assess_one("create", "DocumentReference", None, doc).level == "high"


def test_text_is_stripped_and_keeps_unicode_newlines_and_tabs() -> None:
    doc = note(text="  Plan:\r\n\tibuprofen 400 mg — twice daily ✓\n  ")
    assert decoded(doc) == "Plan:\r\n\tibuprofen 400 mg — twice daily ✓"


def test_text_of_20000_characters_is_fine() -> None:
    assert len(decoded(note(text="é" * 20000))) == 20000


@pytest.mark.parametrize(
    "text", ["", "   \n\t", "x" * 20001, f"{SECRET}\x00", f"{SECRET}\x1b[31m", f"{SECRET}\x85more", f"{SECRET}\x7f"]
)
def test_bad_text_is_refused_without_echoing_it(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        note(text=text)
    assert info.value.param == "text"
    assert SECRET not in str(info.value)


def test_text_must_be_a_string() -> None:
    with pytest.raises(InvalidInput, match="text"):
        note(text=b"bytes")


@pytest.mark.parametrize("title", ["", "  ", "t" * 201, f"{SECRET}\nsecond line"])
def test_bad_title_is_refused(title: str) -> None:
    with pytest.raises(InvalidInput) as info:
        note(title=title)
    assert info.value.param == "title" and SECRET not in str(info.value)


def test_title_of_200_characters_is_fine() -> None:
    assert note(title="t" * 200)["description"] == "t" * 200


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("new_id", "note 1"),
        ("new_id", ""),
        ("patient_id", "Patient/p1"),
        ("patient_id", "p" * 65),
        ("encounter_id", "enc_1"),
    ],
)
def test_bad_ids_are_refused(field: str, value: str) -> None:
    with pytest.raises(InvalidInput) as info:
        note(**{field: value})
    assert info.value.param == field


@pytest.mark.parametrize("author", ["dr-1", "Patient/p1", "Practitioner/", "Practitioner/a b", "Organization/o1"])
def test_author_must_reference_a_practitioner_or_role(author: str) -> None:
    with pytest.raises(InvalidInput) as info:
        note(author=author)
    assert info.value.param == "author"


def test_naive_now_is_refused() -> None:
    with pytest.raises(InvalidInput, match="now"):
        note(now=datetime(2026, 11, 20, 14, 5))
