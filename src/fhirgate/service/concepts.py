"""A condition or a lab named by words or by a code -> the exact codes a filter uses, through Terminology.lookup.

find_patients (`condition`) and run_report (`condition`, `lab`) resolve their arguments here, so both read a
clinician's words the same way and say which codes they used. Nothing is guessed (docs/terminology.md):
- words are taken only when the best candidate is a full, exact match (every word matched exactly and the
  matched name has no other words: a curated synonym such as "type 2 diabetes", or an ICD-10-CM description
  spelled out) and no candidate of another concept scores the same; a close spelling, a partial match, a
  tie or no match is InvalidInput on the parameter listing the candidates the caller can choose from;
- a code (`E11`, `4548-4`, `system|code`) is taken as given when it is well formed and in a system the
  filter accepts (condition: ICD-10-CM or SNOMED CT; lab: LOINC); a bare non-ICD code must be known to the
  curated list, else the caller is asked for `system|code`;
- an ICD-10-CM code stands for itself and every code below it (FHIR R4 §3.1.1.5.5 `:below`), and when a
  curated concept is named by that ICD-10-CM code, its codes in the other accepted systems (e.g. SNOMED CT for
  the same diagnosis) are added.
Only the curated synonyms and ICD-10-CM are consulted (not the codes seen in the practice's data), so the same
words resolve to the same codes for every caller and reveal nothing about the practice.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

from fhirgate.errors import InvalidInput
from fhirgate.terminology import icd10cm
from fhirgate.terminology.lookup import SOURCE_WEIGHT, Candidate, Terminology
from fhirgate.terminology.synonyms import Concept, concepts
from fhirgate.terminology.systems import ICD10CM, LOINC, SNOMED, alias_of, resolve_system

MAX_TEXT = 200
MAX_CHOICES = 6
# A code as it may reach SQL or a search value: no quotes, spaces or separators.
CODE_TEXT = re.compile(r"[A-Za-z0-9.\-]{1,64}")
_BARE_NUMERIC = re.compile(r"\d[\d\-]{0,63}")
_DOTTED_ICD = re.compile(r"[A-Za-z][0-9][0-9A-Za-z]\.[0-9A-Za-z]{1,4}")


@dataclass(frozen=True, slots=True)
class Kind:
    """What a parameter names: the code systems it accepts and the curated concept kinds that count."""

    name: str
    systems: tuple[str, ...]
    concept_kinds: tuple[str, ...]
    example: str


CONDITION = Kind("condition", (ICD10CM, SNOMED), ("condition",), "'type 2 diabetes', 'hypertension', E11")
LAB = Kind("lab", (LOINC,), ("lab", "vital"), "'HbA1c', 'LDL', 'creatinine', 4548-4")


@dataclass(frozen=True, slots=True)
class ResolvedCodes:
    """The codes a condition or lab argument stands for, and how they were found."""

    param: str
    text: str
    kind: str
    concept: str | None
    matched: tuple[dict[str, Any], ...]  # what the argument itself matched (before ICD-10-CM expansion)
    codes: tuple[tuple[str, str], ...]  # every (system, code) used, ICD-10-CM codes expanded below
    icd_roots: tuple[str, ...]

    def by_system(self, system: str) -> list[str]:
        """The codes of one system, in order."""
        return [code for s, code in self.codes if s == system]

    def rule(self) -> str:
        """In words: what the argument was read as and which codes that means."""
        named = ", ".join(f"{alias_of(m['system'])} {m['code']}" for m in self.matched)
        parts = [f"{self.param} {self.text!r} was read as {named}"]
        if self.concept:
            parts[0] += f" (curated concept {self.concept!r})"
        if self.icd_roots:
            count = len(self.by_system(ICD10CM))
            parts.append(f"ICD-10-CM {', '.join(self.icd_roots)} and every code below ({count} codes)")
        named_codes = {(str(m["system"]), str(m["code"])) for m in self.matched}
        others = [f"{alias_of(s)} {c}" for s, c in self.codes if s != ICD10CM and (s, c) not in named_codes]
        if others:
            parts.append("also " + ", ".join(others))
        return "; ".join(parts) + "."

    def to_dict(self) -> dict[str, Any]:
        """The JSON form a result reports (`matched`)."""
        return {
            "text": self.text,
            "concept": self.concept,
            "matched": list(self.matched),
            "codes": [f"{s}|{c}" for s, c in self.codes],
            "rule": self.rule(),
        }


_lock = threading.Lock()
_terminology: Terminology | None = None


def _lookup() -> Terminology:
    """The process-wide Terminology over the curated synonyms and ICD-10-CM (no practice data)."""
    global _terminology
    with _lock:
        if _terminology is None:
            _terminology = Terminology()
        return _terminology


def _concept(name: str | None) -> Concept | None:
    return next((c for c in concepts() if c.name == name), None) if name else None


def _concepts_with(system: str, code: str, kind: Kind) -> list[Concept]:
    return [
        c
        for c in concepts()
        if c.kind in kind.concept_kinds and any(x.system == system and x.code == code for x in c.codes)
    ]


def _shown(c: Candidate) -> str:
    return f"{c.system}|{c.code} {c.display!r}"


def _choices(cands: list[Candidate], kind: Kind) -> str:
    listed = [_shown(c) for c in cands[:MAX_CHOICES]]
    tail = "; or one of these codes as system|code, or a curated name such as " + kind.example
    return "; ".join(listed) + tail if listed else "a name such as " + kind.example + " or a code"


def _allowed(c: Candidate, kind: Kind) -> bool:
    if c.system not in kind.systems:
        return False
    if c.source == "synonym":
        concept = _concept(c.concept)
        return concept is not None and concept.kind in kind.concept_kinds
    return True


def resolve(value: Any, *, param: str, kind: Kind) -> ResolvedCodes:
    """The codes `value` (words or a code) stands for; InvalidInput on `param` unless it names one thing exactly."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(param, f"must be a non-empty {kind.name} name or code", kind.example)
    text = value.strip()
    if len(text) > MAX_TEXT:
        raise InvalidInput(param, f"too long ({len(text)} characters)", f"at most {MAX_TEXT} characters")
    if (
        "|" in text
        or icd10cm.normalize(text) is not None
        or _BARE_NUMERIC.fullmatch(text)
        or _DOTTED_ICD.fullmatch(text)
    ):
        return _by_code(text, param, kind)
    return _by_words(text, param, kind)


def _by_code(text: str, param: str, kind: Kind) -> ResolvedCodes:
    head, bar, code = text.rpartition("|")
    system = resolve_system(head, param) if bar else None
    code = code.strip()
    if not CODE_TEXT.fullmatch(code):
        raise InvalidInput(param, "not a code", "1-64 of A-Z a-z 0-9 . - (optionally system|code)")
    if system is None and (icd10cm.normalize(code) is not None or _DOTTED_ICD.fullmatch(code)):
        system = ICD10CM
    if system is None:
        known = [c for c in _lookup().lookup(code=code, limit=10).matches if c.system in kind.systems]
        if len(known) != 1:
            problem = "is not a code known here" if not known else "is a code in several systems"
            raise InvalidInput(param, f"{problem}; give it as system|code", _choices(known, kind))
        system = known[0].system
    if system not in kind.systems:
        raise InvalidInput(param, f"a {kind.name} code must be in another system", ", ".join(kind.systems))
    if system == ICD10CM:
        found = icd10cm.item(code)
        if found is None:
            raise InvalidInput(param, "not an ICD-10-CM code", "a category or subcategory such as E11 or E11.9")
        matched = {"system": ICD10CM, "code": found.code, "display": found.display, "source": "icd10cm"}
        return _expand(text, param, kind, [matched], None)
    shown = next((c.display for c in _lookup().lookup(code=code, system=system).matches), None)
    given: dict[str, Any] = {
        "system": system,
        "code": code,
        "display": shown,
        "source": "synonym" if shown else "given",
    }
    return _expand(text, param, kind, [given], None)


def _by_words(text: str, param: str, kind: Kind) -> ResolvedCodes:
    system = kind.systems[0] if len(kind.systems) == 1 else None
    result = _lookup().lookup(text=text, system=system, limit=50)
    cands = [c for c in result.matches if _allowed(c, kind)]
    if not cands:
        hints = [c for c in result.suggestions if _allowed(c, kind)]
        raise InvalidInput(param, f"no {kind.name} code matches these words", _choices(hints, kind))
    if result.corrections:
        read = ", ".join(f"{w} -> {'/'.join(r)}" for w, r in result.corrections.items())
        raise InvalidInput(
            param, f"some words were read as close spellings ({read}); confirm one", _choices(cands, kind)
        )
    top = cands[0]
    full = top.match == "exact" and abs(top.score - SOURCE_WEIGHT[top.source]) < 1e-9
    tied = {
        c.concept if c.source == "synonym" else (c.system, c.code) for c in cands if abs(c.score - top.score) < 1e-9
    }
    if not full or len(tied) > 1:
        raise InvalidInput(param, f"these words do not name one {kind.name} exactly; choose one", _choices(cands, kind))
    if top.source == "synonym":
        concept = _concept(top.concept)
        assert concept is not None
        picked = [c for c in concept.codes if c.system in kind.systems]
        matched = [{"system": c.system, "code": c.code, "display": c.display, "source": "synonym"} for c in picked]
        return _expand(text, param, kind, matched, concept.name)
    one = {"system": top.system, "code": top.code, "display": top.display, "source": top.source}
    return _expand(text, param, kind, [one], None)


def _expand(text: str, param: str, kind: Kind, matched: list[dict[str, Any]], concept: str | None) -> ResolvedCodes:
    """The matched codes with ICD-10-CM expanded below and the same concept's codes in the other systems."""
    codes: dict[tuple[str, str], None] = {}
    roots: list[str] = []
    extra: list[tuple[str, str]] = []
    for m in matched:
        system, code = str(m["system"]), str(m["code"])
        if system == ICD10CM:
            roots.append(code)
            codes.update(dict.fromkeys((ICD10CM, c) for c in icd10cm.expand_below(code, param)))
            for same in _concepts_with(ICD10CM, code, kind):
                extra += [(c.system, c.code) for c in same.codes if c.system in kind.systems and c.system != ICD10CM]
                concept = concept or same.name
        else:
            codes[(system, code)] = None
    codes.update(dict.fromkeys(extra))
    for _, code in codes:
        if not CODE_TEXT.fullmatch(code):  # every code may be inlined into report SQL
            raise InvalidInput(param, "resolved to a code that cannot be used", "A-Z a-z 0-9 . -")
    return ResolvedCodes(param, text, kind.name, concept, tuple(matched), tuple(codes), tuple(roots))
