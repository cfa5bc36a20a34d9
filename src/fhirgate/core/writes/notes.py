"""A clinical note written by the model as a draft DocumentReference that a clinician reviews and finalises.

Pure: the caller supplies the new id and the clock. The note is `docStatus` preliminary (FHIR R4
composition-status: a draft), which the write risk rules score low (`risk.clinical_draft`). The shape follows
the demo practice's notes (demo/notes.py) so note views read both. Errors name parameters only, never the note.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from fhirgate.core.fhir.validate import ID_RE
from fhirgate.core.writes.fields import fhir_id, free_text
from fhirgate.errors import InvalidInput

LOINC = "http://loinc.org"
# US Core DocumentReference category (us-core-documentreference-category), as the demo practice writes it.
NOTE_CATEGORY = "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category"
# Note kinds -> LOINC document type (code, display); documentreference.html DocumentReference.type.
NOTE_TYPES: Mapping[str, tuple[str, str]] = {
    "progress": ("11506-3", "Progress note"),
    "consult": ("11488-4", "Consult note"),
    "discharge": ("18842-5", "Discharge summary"),
    "history": ("34117-2", "History and physical note"),
    "telephone": ("34748-4", "Telephone encounter Note"),
    "other": ("34109-9", "Note"),
}
AUTHOR_TYPES: tuple[str, ...] = ("Practitioner", "PractitionerRole")
CONTENT_TYPE = "text/plain; charset=utf-8"
MAX_TEXT = 20000
MAX_TITLE = 200


def _author(value: str) -> str:
    """A relative reference to the note's author (documentreference.html DocumentReference.author)."""
    kind, _, rid = value.partition("/")
    if kind not in AUTHOR_TYPES or not ID_RE.fullmatch(rid):
        raise InvalidInput("author", "not a reference to the author", "Practitioner/<id>, PractitionerRole/<id>")
    return value


def _instant(moment: datetime) -> str:
    """`now` as a FHIR instant with seconds and its own offset; InvalidInput when it has no offset."""
    if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidInput("now", "must be a datetime with a UTC offset")
    return moment.replace(microsecond=0).isoformat(timespec="seconds")


def draft_note(
    *,
    new_id: str,
    patient_id: str,
    text: str,
    now: datetime,
    author: str | None = None,
    title: str | None = None,
    note_type: str = "progress",
    encounter_id: str | None = None,
) -> dict[str, Any]:
    """A new DocumentReference holding `text` as an inline plain-text attachment, in draft (docStatus preliminary)."""
    fhir_id("new_id", new_id)
    fhir_id("patient_id", patient_id)
    if encounter_id is not None:
        fhir_id("encounter_id", encounter_id)
    if note_type not in NOTE_TYPES:
        raise InvalidInput("note_type", "unknown note type", ", ".join(NOTE_TYPES))
    body_text = free_text("text", text, MAX_TEXT, multiline=True)
    heading = None if title is None else free_text("title", title, MAX_TITLE, multiline=False)
    author_ref = None if author is None else _author(author)
    stamp = _instant(now)
    code, display = NOTE_TYPES[note_type]

    note: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": new_id,
        # documentreference.html: status is the reference's own state (current); docStatus the document's
        # (composition-status preliminary: a draft the clinician finalises).
        "status": "current",
        "docStatus": "preliminary",
        "type": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
        "category": [
            {
                "coding": [{"system": NOTE_CATEGORY, "code": "clinical-note", "display": "Clinical Note"}],
                "text": "Clinical Note",
            }
        ],
        "subject": {"reference": f"Patient/{patient_id}"},
        "date": stamp,
    }
    if author_ref is not None:
        note["author"] = [{"reference": author_ref}]
    if heading is not None:
        note["description"] = heading
    # documentreference.html DocumentReference.content.attachment: the note inline as base64 data (Attachment.data).
    note["content"] = [
        {
            "attachment": {
                "contentType": CONTENT_TYPE,
                "data": base64.b64encode(body_text.encode("utf-8")).decode("ascii"),
                "title": heading or f"{display} {now.date().isoformat()}",
                "creation": stamp,
            }
        }
    ]
    if encounter_id is not None:
        note["context"] = {"encounter": [{"reference": f"Encounter/{encounter_id}"}]}
    return note
