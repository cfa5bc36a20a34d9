"""Detection on real-looking data: every injected demo note is flagged; ordinary demo and Synthea text never is."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from fhirgate.demo.generator import PracticeGenerator
from fhirgate.demo.notes import INJECTIONS
from fhirgate.text.attachments import resource_texts
from fhirgate.text.untrusted import _pattern_signals, detect, detection_view, fence_many

TODAY = dt.date(2025, 6, 30)


def _practice(patients: int) -> tuple[list[dict[str, Any]], set[str]]:
    gen = PracticeGenerator(patients=patients, seed=42, today=TODAY)
    resources = [r for batch in gen.batches() for r in batch]
    return resources, set(gen.summary.injection_note_ids)


@pytest.fixture(scope="module")
def practice60() -> tuple[list[dict[str, Any]], set[str]]:
    return _practice(60)


def _note_text(note: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p, t) for p, t in resource_texts(note) if p.startswith("content[") and p.endswith("attachment")]


@pytest.mark.parametrize("injection", INJECTIONS)
def test_every_demo_injection_is_flagged(injection: str) -> None:
    assert detect(injection), injection
    wrapped = f'Mood better.\nPatient portal message copied into chart: "{injection}"\nTaking medications.'
    assert detect(wrapped)


def test_injected_notes_flagged_and_ordinary_notes_not(practice60: tuple[list[dict[str, Any]], set[str]]) -> None:
    resources, injected = practice60
    notes = [r for r in resources if r["resourceType"] == "DocumentReference"]
    assert len(notes) > 500 and len(injected) >= 2
    flagged_ordinary: list[str] = []
    for note in notes:
        texts = _note_text(note)
        assert texts, note["id"]
        fenced = fence_many(texts, prefix=f"DocumentReference/{note['id']}")
        if note["id"] in injected:
            assert any(f.flagged for f in fenced), note["id"]
        elif any(f.flagged for f in fenced):
            flagged_ordinary.append(note["id"])
    assert flagged_ordinary == []  # false-positive rate 0 on ordinary notes


def test_no_ordinary_free_text_anywhere_in_the_practice_is_flagged(
    practice60: tuple[list[dict[str, Any]], set[str]],
) -> None:
    resources, injected = practice60
    checked = 0
    hits: list[tuple[str, str, tuple[str, ...]]] = []
    seen: set[str] = set()
    for r in resources:
        if r.get("id") in injected:
            continue
        for path, text in resource_texts(r):
            if text in seen:
                continue
            seen.add(text)
            checked += 1
            signals = detect(text)
            if signals:
                hits.append((f"{r['resourceType']}/{r.get('id')}", path, signals))
    assert checked > 1000
    assert hits == []


def test_all_four_injections_flagged_inside_generated_notes() -> None:
    resources, injected = _practice(160)  # slots 8 and 33 mod 50, injection index (n // 50) % 4
    notes = {r["id"]: r for r in resources if r["resourceType"] == "DocumentReference"}
    found: set[int] = set()
    for note_id in injected:
        raw = base64.b64decode(notes[note_id]["content"][0]["attachment"]["data"]).decode()
        texts = _note_text(notes[note_id])
        assert any(detect(t) for _, t in texts), note_id
        found |= {i for i, inj in enumerate(INJECTIONS) if inj.split()[0] in raw}
    assert found == set(range(len(INJECTIONS)))


def test_prefilter_never_changes_the_outcome(practice60: tuple[list[dict[str, Any]], set[str]]) -> None:
    resources, injected = practice60
    samples = list(INJECTIONS)
    samples += [t for r in resources if r.get("id") in injected for _, t in resource_texts(r)]
    samples += [t for r in resources[:400] for _, t in resource_texts(r)]
    for text in samples:
        view = detection_view(text)
        assert _pattern_signals(view) == _pattern_signals(view, prefilter=False)


@pytest.mark.shared
def test_synthea_sample_text_is_not_flagged(synthea_dir: Path) -> None:
    checked = 0
    seen: set[str] = set()
    hits: list[tuple[str, str, tuple[str, ...]]] = []
    for path in sorted(synthea_dir.glob("*.json")):
        bundle = json.loads(path.read_text())
        for entry in bundle.get("entry", []):
            resource = entry.get("resource", {})
            for element, text in resource_texts(resource):
                if text in seen:
                    continue
                seen.add(text)
                checked += 1
                signals = detect(text)
                if signals:
                    hits.append((f"{resource.get('resourceType')}/{resource.get('id')}", element, signals))
    assert checked > 1000
    assert hits == []
