"""Word matching for code lookup: tokens, a bounded edit distance, and an inverted index with fuzzy expansion.

Rules (docs/terminology.md):
- text is casefolded, accents stripped (core.fhir.normalize), split on anything not a letter or digit; a few
  function words ("of", "the", ...) are dropped, SNOMED CT semantic tags such as "(disorder)" are ignored;
- a query word matches an index word exactly (quality 1.0), as a prefix when it has at least 4 characters
  (0.9), or, when it is not an index word itself and has at least 4 characters, fuzzily: optimal string
  alignment distance (Levenshtein plus adjacent transposition) at most 1, or 2 for words of 8+ characters
  (0.8 at distance 1, 0.65 at 2). Candidates come from a symmetric delete-1 index (SymSpell-style), so a
  lookup never scans the vocabulary;
- a document matches when EVERY query word matches one of its words; its score is the mean quality times
  (0.6 + 0.4 x specificity), specificity = query words / document words (capped at 1), so short, exact
  descriptions rank first.
"""

from __future__ import annotations

import bisect
import heapq
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from fhirgate.core.fhir.normalize import normalize_text

_WORD = re.compile(r"[a-z0-9]+")
_TAGS = (
    "disorder|finding|procedure|substance|observable entity|situation|qualifier value|regime/therapy|"
    "morphologic abnormality|clinical drug|product|medicinal product"
)
_SEMANTIC_TAG = re.compile(rf"\s*\(({_TAGS})\)\s*$")
_normalize = normalize_text.__wrapped__
STOPWORDS = frozenset({"a", "an", "and", "by", "for", "in", "of", "on", "or", "the", "to", "with"})
EXACT, PREFIX, FUZZY1, FUZZY2 = 1.0, 0.9, 0.8, 0.65
MIN_PREFIX = 4
MIN_FUZZY = 4
LONG_WORD = 8
MAX_PREFIX_WORDS = 64


def tokens(text: str) -> tuple[str, ...]:
    """The content words of `text`, normalized, in order, without duplicates or function words."""
    # The uncached form: indexing ~100,000 descriptions must not flush the search normalizer's cache.
    norm = _SEMANTIC_TAG.sub("", _normalize(text))
    seen: dict[str, None] = {}
    for word in _WORD.findall(norm):
        if word not in STOPWORDS:
            seen.setdefault(word, None)
    return tuple(seen)


def osa_distance(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance between `a` and `b`, or `limit + 1` once it exceeds `limit`."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        best = cur[0]
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            value = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                value = min(value, prev2[j - 2] + 1)
            cur[j] = value
            best = min(best, value)
        if best > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[len(b)]


def _deletes(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


@dataclass(slots=True)
class Hits:
    """What one query found in one index: full matches (doc -> score), partial ones, and fuzzy readings."""

    full: dict[int, float] = field(default_factory=dict)
    partial: dict[int, float] = field(default_factory=dict)
    corrections: dict[str, list[str]] = field(default_factory=dict)
    per_word: list[dict[int, float]] = field(default_factory=list)
    inexact: bool = False  # some word matched by prefix or fuzzily

    def kind(self, doc_id: int) -> str:
        """How a document matched: exact, prefix (some word completed) or corrected (some word read fuzzily)."""
        if not self.inexact:
            return "exact"
        qualities = [q.get(doc_id, 0.0) for q in self.per_word]
        if any(q < PREFIX for q in qualities):
            return "corrected"
        return "prefix" if any(q < EXACT for q in qualities) else "exact"

    def top(self, n: int) -> dict[int, float]:
        """The `n` best full matches (ties: lower document ids, i.e. table order, first)."""
        if len(self.full) <= n:
            return self.full
        return dict(heapq.nlargest(n, self.full.items(), key=lambda kv: (kv[1], -kv[0])))


class TokenIndex:
    """An inverted index over documents given as word tuples, with prefix and fuzzy word expansion."""

    def __init__(self, docs: Sequence[tuple[str, ...]]) -> None:
        postings: dict[str, list[int]] = {}
        for doc_id, words in enumerate(docs):
            for word in words:
                postings.setdefault(word, []).append(doc_id)
        self._postings = postings
        self._sizes = [max(1, len(words)) for words in docs]
        self._vocab = sorted(postings)
        deletes: dict[str, list[str]] = {}
        for word in self._vocab:
            if len(word) >= MIN_FUZZY - 1:
                for variant in _deletes(word):
                    deletes.setdefault(variant, []).append(word)
        self._deletes = deletes

    def __len__(self) -> int:
        return len(self._sizes)

    def knows(self, word: str) -> bool:
        """True when `word` is an index word or (4+ characters) the prefix of one."""
        if word in self._postings:
            return True
        if len(word) < MIN_PREFIX:
            return False
        start = bisect.bisect_left(self._vocab, word)
        return start < len(self._vocab) and self._vocab[start].startswith(word)

    def expand(self, word: str) -> tuple[dict[str, float], bool]:
        """Index words `word` may stand for, with match quality; True when the match is fuzzy."""
        found: dict[str, float] = {}
        if word in self._postings:
            found[word] = EXACT
        if len(word) >= MIN_PREFIX:
            start = bisect.bisect_left(self._vocab, word)
            for vocab_word in self._vocab[start : start + MAX_PREFIX_WORDS]:
                if not vocab_word.startswith(word):
                    break
                found.setdefault(vocab_word, PREFIX)
        if found or len(word) < MIN_FUZZY:
            return found, False
        limit = 2 if len(word) >= LONG_WORD else 1
        candidates: set[str] = set(self._deletes.get(word, ()))
        for variant in _deletes(word):
            if variant in self._postings:
                candidates.add(variant)
            candidates.update(self._deletes.get(variant, ()))
        for candidate in candidates:
            distance = osa_distance(word, candidate, limit)
            if distance <= limit:
                found[candidate] = FUZZY1 if distance <= 1 else FUZZY2
        return found, bool(found)

    def search(self, words: Sequence[str], *, want_partial: bool = False) -> Hits:
        """Documents matching every word (scored), and with `want_partial` those matching only some."""
        hits = Hits()
        if not words:
            return hits
        per_word = hits.per_word
        for word in words:
            expanded, fuzzy = self.expand(word)
            if fuzzy:
                hits.corrections[word] = sorted(expanded, key=lambda w: (-expanded[w], w))[:3]
            if len(expanded) == 1 and word in expanded:
                per_word.append(dict.fromkeys(self._postings[word], EXACT))
                continue
            hits.inexact = hits.inexact or bool(expanded)
            quality: dict[int, float] = {}
            for vocab_word, q in expanded.items():
                for doc_id in self._postings[vocab_word]:
                    if quality.get(doc_id, 0.0) < q:
                        quality[doc_id] = q
            per_word.append(quality)
        k = len(words)
        order = sorted(range(k), key=lambda i: len(per_word[i]))
        common = set(per_word[order[0]])
        for i in order[1:]:
            if not common:
                break
            common &= per_word[i].keys()
        sizes = self._sizes
        if k == 1:
            only = per_word[0]
            hits.full = {d: only[d] * (0.6 + 0.4 * min(1.0, 1 / sizes[d])) for d in common}
        else:
            for doc_id in common:
                hits.full[doc_id] = self._score([q[doc_id] for q in per_word], doc_id, k)
        if want_partial and not common and k > 1:
            counts: dict[int, list[float]] = {}
            for quality in per_word:
                for doc_id, q in quality.items():
                    counts.setdefault(doc_id, []).append(q)
            for doc_id, qs in counts.items():
                hits.partial[doc_id] = self._score(qs, doc_id, k)  # the mean over k counts the missing words as 0
        return hits

    def _score(self, qualities: Sequence[float], doc_id: int, k: int) -> float:
        specificity = min(1.0, k / self._sizes[doc_id])
        return sum(qualities) / k * (0.6 + 0.4 * specificity)
