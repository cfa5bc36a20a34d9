"""Terminology.lookup: a clinician's words -> ranked candidate codes, or a code -> its display and hierarchy.

Three sources, each named on every candidate: `synonym` (the curated list, synonyms.toml), `icd10cm` (the CMS
tables from simple-icd-10-cm) and `seen-in-data` (codes in the practice's own records, seen.py). Matching
rules are in matching.py. Nothing is guessed: when no source has every word, the result is an explicit
"no-match"; codes sharing only some of the words come back separately as `suggestions`, marked as such.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from fhirgate.errors import InvalidInput
from fhirgate.terminology import icd10cm
from fhirgate.terminology.matching import Hits, TokenIndex, tokens
from fhirgate.terminology.seen import VIEWS, SeenCode, SeenCodes
from fhirgate.terminology.synonyms import Concept, concepts, curated_codes
from fhirgate.terminology.systems import ICD10CM, resolve_system

MAX_TEXT = 200
MAX_WORDS = 12
MAX_CODE = 64
MAX_LIMIT = 50
MAX_DESCENDANTS = 50
MAX_SUGGESTIONS = 5
MAX_RANKED = 300
_CODE_TEXT = re.compile(r"[A-Za-z0-9.\-]{1,64}")
# Ties rank curated codes first, then codes the practice uses, then the ICD-10-CM tables.
_WEIGHT = {"synonym": 1.0, "seen-in-data": 0.98, "icd10cm": 0.95}
_RANK = {"synonym": 0, "seen-in-data": 1, "icd10cm": 2}
# The score of a candidate whose every word matched exactly and which has no other words (specificity 1).
SOURCE_WEIGHT: dict[str, float] = dict(_WEIGHT)
NO_MATCH_TEXT = (
    "No code matched all of these words in the curated synonyms, ICD-10-CM or the codes in this practice's data. "
    "This is not a code for the term: ask the user to rephrase or to give a code. Any `suggestions` share only "
    "some of the words and are NOT matches; never use one without the user's confirmation."
)
NO_MATCH_CODE = (
    "This code is not in the ICD-10-CM tables, the curated list or this practice's data. fhirgate ships no full "
    "LOINC, SNOMED CT, RxNorm or CVX tables, so the code may still exist elsewhere; its meaning is unknown here."
)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One candidate code: where it came from, how well it matched, and whether the practice's data uses it."""

    system: str
    code: str
    display: str
    score: float
    source: str
    match: str  # exact | prefix | corrected (fuzzy) | partial (suggestions only) | code
    seen_in_data: bool = False
    concept: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "system": self.system,
            "code": self.code,
            "display": self.display,
            "score": round(self.score, 3),
            "source": self.source,
            "match": self.match,
            "seen_in_data": self.seen_in_data,
            "concept": self.concept,
        }


@dataclass(slots=True)
class LookupResult:
    """The answer to one lookup: matches (or an explicit no-match), corrections, suggestions, ICD hierarchy."""

    mode: str
    query: dict[str, Any]
    status: str
    matches: list[Candidate]
    total: int
    note: str
    corrections: dict[str, list[str]] = field(default_factory=dict)
    suggestions: list[Candidate] = field(default_factory=list)
    hierarchy: dict[str, Any] | None = None
    seen_types: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what the lookup_code tool returns)."""
        return {
            "mode": self.mode,
            "query": self.query,
            "status": self.status,
            "matches": [c.to_dict() for c in self.matches],
            "total": self.total,
            "corrections": [{"term": k, "read_as": v} for k, v in self.corrections.items()],
            "suggestions": [c.to_dict() for c in self.suggestions],
            "hierarchy": self.hierarchy,
            "seen_in_data_types": self.seen_types,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class _Static:
    """The process-wide index over the synonym terms (first) and ICD-10-CM descriptions."""

    index: TokenIndex
    term_concept: tuple[Concept, ...]
    icd: tuple[icd10cm.IcdItem, ...]


@dataclass(frozen=True, slots=True)
class _SeenView:
    """One store's seen codes with their word index, as visible to one caller (`allowed` resource types)."""

    codes: tuple[SeenCode, ...]
    index: TokenIndex
    types_of: dict[tuple[str, str], frozenset[str]]
    first: dict[tuple[str, str], SeenCode]
    allowed: frozenset[str]

    def visible(self, doc_id: int) -> bool:
        return self.codes[doc_id].resource_type in self.allowed

    def has(self, key: tuple[str, str]) -> bool:
        return bool(self.types_of.get(key, frozenset()) & self.allowed)

    def get(self, key: tuple[str, str]) -> SeenCode | None:
        return self.first.get(key) if self.has(key) else None


_static_lock = threading.Lock()
_static: _Static | None = None


def _static_index() -> _Static:
    global _static
    with _static_lock:
        if _static is None:
            owners: list[Concept] = []
            docs: list[tuple[str, ...]] = []
            for concept in concepts():
                for term in concept.terms:
                    owners.append(concept)
                    docs.append(tokens(term))
            items = icd10cm.all_codes()
            docs.extend(tokens(item.display) for item in items)
            _static = _Static(TokenIndex(docs), tuple(owners), items)
        return _static


def expand_below(system: str | None, code: str) -> list[str]:
    """For ICD-10-CM, the code and all its descendants (FHIR `:below`); other systems have no hierarchy here."""
    if resolve_system(system) != ICD10CM:
        raise InvalidInput("system", "only the ICD-10-CM hierarchy is supported", ICD10CM)
    return icd10cm.expand_below(code)


class Terminology:
    """Offline code lookup over the curated synonyms, ICD-10-CM and (optionally) one store's seen codes."""

    def __init__(self, seen: SeenCodes | None = None) -> None:
        """`seen` supplies the practice's codes (None: curated synonyms and ICD-10-CM only)."""
        self._seen = seen
        self._lock = threading.Lock()
        self._seen_state: tuple[int, _SeenView] | None = None

    @classmethod
    def for_store(cls, store: Any) -> Terminology:
        """A Terminology that also knows the codes seen in `store` (a SQLite store; others: no seen codes)."""
        return cls(SeenCodes.for_store(store))

    def warm(self) -> None:
        """Build the indexes now rather than on the first lookup."""
        _static_index()
        self._seen_view(None)

    def _seen_view(self, allowed: Collection[str] | None) -> _SeenView:
        types = frozenset(allowed) if allowed is not None else frozenset(t for _, t in VIEWS)
        if self._seen is None:
            return _SeenView((), TokenIndex([]), {}, {}, types)
        codes = self._seen.current()
        with self._lock:
            state = self._seen_state
            if state is None or state[0] != self._seen.generation:
                types_of: dict[tuple[str, str], frozenset[str]] = {}
                first: dict[tuple[str, str], SeenCode] = {}
                for c in codes:
                    key = (c.system, c.code)
                    types_of[key] = types_of.get(key, frozenset()) | {c.resource_type}
                    first.setdefault(key, c)
                view = _SeenView(codes, TokenIndex([tokens(c.display) for c in codes]), types_of, first, types)
                state = (self._seen.generation, view)
                self._seen_state = state
        base = state[1]
        return _SeenView(base.codes, base.index, base.types_of, base.first, types)

    # -- the one public entry point ------------------------------------------------------------------

    def lookup(
        self,
        text: str | None = None,
        code: str | None = None,
        system: str | None = None,
        limit: int = 10,
        *,
        seen_types: Collection[str] | None = None,
    ) -> LookupResult:
        """Words -> ranked candidates, or a code -> its display (and ICD-10-CM ancestors and descendants).

        `seen_types` limits the seen-in-data source to codes of those resource types (None: all four).
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise InvalidInput("limit", f"must be an integer from 1 to {MAX_LIMIT}")
        if (text is None) == (code is None):
            raise InvalidInput("text", "give either text (words) or code, exactly one of them", "text or code")
        uri = resolve_system(system)
        seen = self._seen_view(seen_types)
        if text is not None:
            result = self._by_text(_check_text(text), uri, limit, seen)
        else:
            assert code is not None
            result = self._by_code(code, uri, limit, seen)
        result.seen_types = sorted(seen.allowed) if self._seen is not None else []
        return result

    # -- words -----------------------------------------------------------------------------------------

    def _by_text(self, text: str, system: str | None, limit: int, seen: _SeenView) -> LookupResult:
        words = list(tokens(text))
        if not words:
            raise InvalidInput("text", "has no words to look up", "letters or digits, e.g. 'HbA1c' or 'diabetes'")
        if len(words) > MAX_WORDS:
            raise InvalidInput("text", f"too many words ({len(words)})", f"at most {MAX_WORDS}")
        static = _static_index()
        static_hits = static.index.search(words, want_partial=True)
        seen_hits = seen.index.search(words, want_partial=True)
        seen_hits.full = {d: v for d, v in seen_hits.full.items() if seen.visible(d)}
        seen_hits.partial = {d: v for d, v in seen_hits.partial.items() if seen.visible(d)}
        found: dict[tuple[str, str], Candidate] = {}
        # Only the best documents become candidates (a word like "injury" matches thousands of ICD codes).
        self._collect(found, static, static_hits, static_hits.top(MAX_RANKED), seen, system)
        self._collect_seen(found, seen, seen_hits, seen_hits.top(MAX_RANKED), system)
        ranked = _ranked(found)
        total = len(ranked)
        if len(static_hits.full) > MAX_RANKED or len(seen_hits.full) > MAX_RANKED:
            total = _count(static, static_hits, seen.codes, seen_hits, system)
        query = {"text": text, "system": system, "limit": limit}
        unknown = [w for w in words if not (static.index.knows(w) or seen.index.knows(w))]
        corrections = {
            w: sorted({*static_hits.corrections.get(w, ()), *seen_hits.corrections.get(w, ())})[:3] for w in unknown
        }
        corrections = {w: r for w, r in corrections.items() if r}
        if ranked:
            note = "Candidates ranked by score; `source` says where each comes from."
            if corrections:
                note += " Some words were read as close spellings (see `corrections`): confirm them if unsure."
            return LookupResult("text", query, "match", ranked[:limit], total, note, corrections)
        partial: dict[tuple[str, str], Candidate] = {}
        self._collect(partial, static, static_hits, static_hits.partial, seen, system, partial=True)
        self._collect_seen(partial, seen, seen_hits, seen_hits.partial, system, partial=True)
        suggestions = _ranked(partial)[: min(limit, MAX_SUGGESTIONS)]
        return LookupResult("text", query, "no-match", [], 0, NO_MATCH_TEXT, corrections, suggestions)

    def _collect(
        self,
        out: dict[tuple[str, str], Candidate],
        static: _Static,
        hits: Hits,
        scores: dict[int, float],
        seen_view: _SeenView,
        system: str | None,
        *,
        partial: bool = False,
    ) -> None:
        terms = len(static.term_concept)
        for doc_id, score in scores.items():
            kind = "partial" if partial else hits.kind(doc_id)
            if doc_id < terms:
                concept = static.term_concept[doc_id]
                for c in concept.codes:
                    if system is None or c.system == system:
                        seen = seen_view.has((c.system, c.code))
                        _keep(out, Candidate(c.system, c.code, c.display, score, "synonym", kind, seen, concept.name))
            elif system is None or system == ICD10CM:
                item = static.icd[doc_id - terms]
                weighted = score * _WEIGHT["icd10cm"]
                seen = seen_view.has((ICD10CM, item.code))
                _keep(out, Candidate(ICD10CM, item.code, item.display, weighted, "icd10cm", kind, seen))

    def _collect_seen(
        self,
        out: dict[tuple[str, str], Candidate],
        seen_view: _SeenView,
        hits: Hits,
        scores: dict[int, float],
        system: str | None,
        *,
        partial: bool = False,
    ) -> None:
        for doc_id, score in scores.items():
            c = seen_view.codes[doc_id]
            if system is None or c.system == system:
                kind = "partial" if partial else hits.kind(doc_id)
                weighted = score * _WEIGHT["seen-in-data"]
                _keep(out, Candidate(c.system, c.code, c.display, weighted, "seen-in-data", kind, True))

    # -- codes -----------------------------------------------------------------------------------------

    def _by_code(self, code: str, system: str | None, limit: int, seen_view: _SeenView) -> LookupResult:
        value, system = _split_code(code, system)
        query = {"code": value, "system": system, "limit": limit}
        curated = curated_codes()
        found: list[Candidate] = []
        hierarchy: dict[str, Any] | None = None
        if system in (None, ICD10CM):
            item = icd10cm.item(value)
            if item is not None:
                seen = seen_view.has((ICD10CM, item.code))
                found.append(Candidate(ICD10CM, item.code, item.display, 1.0, "icd10cm", "code", seen))
                hierarchy = _hierarchy(item.code)
        if system != ICD10CM:
            known = {s for s, _ in curated} | {s for s, _ in seen_view.types_of}
            systems = [system] if system is not None else sorted(known - {ICD10CM})
            for uri in systems:
                assert uri is not None
                syn, data = curated.get((uri, value)), seen_view.get((uri, value))
                if syn is not None:
                    found.append(Candidate(uri, value, syn.display, 1.0, "synonym", "code", data is not None))
                elif data is not None:
                    found.append(Candidate(uri, value, data.display, 1.0, "seen-in-data", "code", True))
        if not found:
            return LookupResult("code", query, "no-match", [], 0, NO_MATCH_CODE)
        note = "The code's display from the source named."
        if hierarchy is not None:
            note += (
                " For every record coded anywhere below it, search with the `below_search` parameter "
                "(search_resources params)."
            )
        return LookupResult("code", query, "match", found[:limit], len(found), note, hierarchy=hierarchy)


def _check_text(text: object) -> str:
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("text", "must be non-empty words", "e.g. 'HbA1c', 'high blood pressure', 'metformin'")
    if len(text) > MAX_TEXT:
        raise InvalidInput("text", f"too long ({len(text)} characters)", f"at most {MAX_TEXT} characters")
    return text.strip()


def _split_code(code: object, system: str | None) -> tuple[str, str | None]:
    """The code and its system, from `code` alone or `system|code`; InvalidInput for anything else."""
    if not isinstance(code, str) or not code.strip():
        raise InvalidInput("code", "must be a non-empty code", "e.g. E11.9, 4548-4 or http://loinc.org|4548-4")
    text = code.strip()
    if len(text) > MAX_CODE + 60:
        raise InvalidInput("code", "too long", f"at most {MAX_CODE} characters (plus an optional 'system|')")
    if "|" in text:
        head, _, text = text.rpartition("|")
        given = resolve_system(head, "code")
        if system is not None and given != system:
            raise InvalidInput("system", "differs from the system in code", "one system, in either place")
        system = given
    if not _CODE_TEXT.fullmatch(text):
        raise InvalidInput("code", "not a code", f"1-{MAX_CODE} of A-Z a-z 0-9 . -")
    return text, system


def _keep(out: dict[tuple[str, str], Candidate], cand: Candidate) -> None:
    key = (cand.system, cand.code)
    old = out.get(key)
    if old is None or (cand.score, -_RANK[cand.source]) > (old.score, -_RANK[old.source]):
        seen = cand.seen_in_data or (old is not None and old.seen_in_data)
        out[key] = Candidate(cand.system, cand.code, cand.display, cand.score, cand.source, cand.match, seen,
                             cand.concept if cand.concept is not None else old.concept if old else None)  # fmt: skip
    elif cand.seen_in_data and not old.seen_in_data:
        out[key] = Candidate(old.system, old.code, old.display, old.score, old.source, old.match, True, old.concept)


def _count(static: _Static, static_hits: Hits, seen: Sequence[SeenCode], seen_hits: Hits, system: str | None) -> int:
    """How many distinct (system, code) candidates all full matches make (without building them)."""
    terms = len(static.term_concept)
    keys: set[tuple[str, str]] = set()
    for doc_id in static_hits.full:
        if doc_id < terms:
            keys.update((c.system, c.code) for c in static.term_concept[doc_id].codes)
        else:
            keys.add((ICD10CM, static.icd[doc_id - terms].code))
    keys.update((seen[d].system, seen[d].code) for d in seen_hits.full)
    return len(keys) if system is None else sum(1 for s, _ in keys if s == system)


def _ranked(found: dict[tuple[str, str], Candidate]) -> list[Candidate]:
    return sorted(found.values(), key=lambda c: (-round(c.score, 6), _RANK[c.source], c.system, c.code))


def _hierarchy(code: str) -> dict[str, Any]:
    below = icd10cm.descendants(code)
    return {
        "ancestors": [{"code": a.code, "display": a.display, "kind": a.kind} for a in icd10cm.ancestors(code)],
        "descendants": [{"code": d, "display": icd10cm.display(d) or ""} for d in below[:MAX_DESCENDANTS]],
        "descendants_total": len(below),
        "descendants_omitted": max(0, len(below) - MAX_DESCENDANTS),
        "below_search": {"param": "code:below", "value": f"{ICD10CM}|{code}"},
    }
