"""Case-insensitive search over (path, text) pairs with snippets, safe against hostile regular expressions.

Python's `re` backtracks and cannot be interrupted, so a pattern from a model (possibly prompt-injected) could
pin a CPU. Regex mode therefore accepts only a safe subset, checked before compiling:

- at most 100 characters; literals, escapes (\\d \\w \\s \\b and their negations, \\xhh, escaped punctuation),
  classes [...], `.`, anchors ^ $, groups (...) and (?:...), alternation |, quantifiers ? * + {m} {m,n}
  (n <= 100, lazy `?` suffix allowed);
- rejected: backreferences, lookaround, named groups, inline flags, possessive quantifiers, a repeating
  quantifier on a group that itself contains a quantifier or an alternation (nested quantifiers: the
  exponential case), more than 3 unbounded quantifiers, and patterns that match the empty string;
- `*` and `+` are rewritten to {0,40} and {1,40}: a wildcard spans at most 40 characters.

Text is then matched line by line in windows of at most 400 characters, so one window costs a bounded amount
of backtracking, and a deadline (1 s) is checked between windows: past it the search stops with InvalidInput.
Matches do not span lines in regex mode. Literal mode (the default) has none of these limits.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from fhirgate.errors import InvalidInput

MAX_PATTERN_CHARS = 200
MAX_REGEX_CHARS = 100
MAX_HITS = 200
MAX_CONTEXT = 500
WILDCARD_SPAN = 40
MAX_UNBOUNDED = 3
MAX_REPEAT = 100
WINDOW = 400
WINDOW_OVERLAP = 100
DEADLINE_SECONDS = 1.0
_REGEX_RULES = "the safe regex subset described in the grep tool (no nested quantifiers, lookaround, backrefs)"
_SIMPLE_ESCAPES = frozenset("dDwWsSbBAZntrfv")
_QUANTIFIER_RE = re.compile(r"\{(\d*)(,(\d*))?\}")


@dataclass(frozen=True, slots=True)
class Hit:
    """One match: the element path, a window of text around it, and its offset in that element's text."""

    path: str
    snippet: str
    start: int


@dataclass(slots=True)
class _Group:
    has_quantifier: bool = False
    has_alternation: bool = False


def _reject(problem: str) -> InvalidInput:
    return InvalidInput("pattern", problem, _REGEX_RULES)


def safe_regex(pattern: str) -> re.Pattern[str]:
    """Check `pattern` against the safe subset, bound its wildcards, and compile it case-insensitively."""
    if len(pattern) > MAX_REGEX_CHARS:
        raise InvalidInput("pattern", "regular expression too long", f"at most {MAX_REGEX_CHARS} characters")
    out: list[str] = []
    stack = [_Group()]
    last: _Group | str | None = None  # the atom a quantifier would apply to: a closed group, "atom", or None
    unbounded = 0
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            nxt = pattern[i + 1 : i + 2]
            if not nxt:
                raise _reject("pattern ends with a backslash")
            if nxt.isdigit():
                raise _reject("backreferences are not allowed")
            if nxt == "x" and re.fullmatch(r"[0-9A-Fa-f]{2}", pattern[i + 2 : i + 4]):
                out.append(pattern[i : i + 4])
                i += 4
            elif nxt in _SIMPLE_ESCAPES or not nxt.isalnum():
                out.append(pattern[i : i + 2])
                i += 2
            else:
                raise _reject(f"unsupported escape \\{nxt}")
            last = "atom"
            continue
        if ch == "[":
            end = _class_end(pattern, i)
            out.append(pattern[i:end])
            i, last = end, "atom"
            continue
        if ch == "(":
            if pattern.startswith("(?:", i):
                out.append("(?:")
                i += 3
            elif pattern.startswith("(?", i):
                raise _reject("lookaround, named groups and inline flags are not allowed")
            else:
                out.append("(")
                i += 1
            stack.append(_Group())
            last = None
            continue
        if ch == ")":
            if len(stack) == 1:
                raise _reject("unbalanced parenthesis")
            closed = stack.pop()
            stack[-1].has_quantifier |= closed.has_quantifier
            stack[-1].has_alternation |= closed.has_alternation
            out.append(")")
            i, last = i + 1, closed
            continue
        if ch == "|":
            stack[-1].has_alternation = True
            out.append("|")
            i, last = i + 1, None
            continue
        if ch in "*+?{":
            bound = _quantifier(pattern, i)
            if bound is None:  # a "{" that is not a quantifier: Python treats it as a literal
                out.append("\\{")
                i, last = i + 1, "atom"
                continue
            text, length, repeats, is_unbounded = bound
            if last is None:
                raise _reject("quantifier without anything to repeat")
            if isinstance(last, _Group) and repeats and (last.has_quantifier or last.has_alternation):
                raise _reject("nested quantifiers are not allowed")
            i += length
            if pattern[i : i + 1] == "?":
                text += "?"
                i += 1
            if pattern[i : i + 1] in ("*", "+", "?", "{"):
                raise _reject("a quantifier cannot follow a quantifier")
            unbounded += is_unbounded
            if unbounded > MAX_UNBOUNDED:
                raise _reject(f"more than {MAX_UNBOUNDED} unbounded quantifiers (* or +)")
            stack[-1].has_quantifier = True
            out.append(text)
            last = None
            continue
        out.append(ch)
        i, last = i + 1, "atom"
    if len(stack) != 1:
        raise _reject("unbalanced parenthesis")
    try:
        compiled = re.compile("".join(out), re.IGNORECASE)
    except re.error as exc:
        raise _reject("not a valid regular expression") from exc
    if compiled.search("") is not None:
        raise _reject("the pattern matches empty text")
    return compiled


def _class_end(pattern: str, start: int) -> int:
    """Index just past the character class opening at `start`."""
    i = start + 1
    if pattern[i : i + 1] == "^":
        i += 1
    if pattern[i : i + 1] == "]":
        i += 1
    while i < len(pattern):
        if pattern[i] == "\\":
            i += 2
            continue
        if pattern[i] == "[":
            raise _reject("nested character classes are not allowed")
        if pattern[i] == "]":
            return i + 1
        i += 1
    raise _reject("unterminated character class")


def _quantifier(pattern: str, i: int) -> tuple[str, int, bool, bool] | None:
    """(rewritten text, length in pattern, repeats more than once, unbounded) of the quantifier at i."""
    ch = pattern[i]
    if ch == "?":
        return "?", 1, False, False
    if ch == "*":
        return f"{{0,{WILDCARD_SPAN}}}", 1, True, True
    if ch == "+":
        return f"{{1,{WILDCARD_SPAN}}}", 1, True, True
    match = _QUANTIFIER_RE.match(pattern, i)
    if match is None or (not match.group(1) and match.group(2) is None):
        return None
    if len(match.group(1)) > 3 or len(match.group(3) or "") > 3:
        raise _reject(f"repeat counts must satisfy m <= n <= {MAX_REPEAT}")
    low = int(match.group(1) or 0)
    if match.group(2) is None:
        high = low
    elif match.group(3):
        high = int(match.group(3))
    else:
        high = max(low, WILDCARD_SPAN)
    if high > MAX_REPEAT or low > high:
        raise _reject(f"repeat counts must satisfy m <= n <= {MAX_REPEAT}")
    unbounded = match.group(2) is not None and not match.group(3)
    return f"{{{low},{high}}}", match.end() - i, high > 1, unbounded


def _windows(text: str) -> Iterator[tuple[int, str]]:
    """(offset, chunk) pieces of text: each line, long lines cut into overlapping windows."""
    offset = 0
    for line in text.split("\n"):
        if len(line) <= WINDOW:
            yield offset, line
        else:
            step = WINDOW - WINDOW_OVERLAP
            for begin in range(0, len(line) - WINDOW_OVERLAP, step):
                yield offset + begin, line[begin : begin + WINDOW]
        offset += len(line) + 1


def _snippet(text: str, start: int, end: int, context: int) -> str:
    left, right = max(0, start - context), min(len(text), end + context)
    body = " ".join(text[left:right].split())
    return ("…" if left > 0 else "") + body + ("…" if right < len(text) else "")


def grep_texts(
    texts: Iterable[tuple[str, str]],
    pattern: str,
    *,
    regex: bool = False,
    context_chars: int = 80,
    max_hits: int = 20,
) -> list[Hit]:
    """Find `pattern` (case-insensitive; literal unless regex=True) in each (path, text); return up to max_hits."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise InvalidInput("pattern", "must be a non-empty string")
    if isinstance(context_chars, bool) or not isinstance(context_chars, int) or not 0 <= context_chars <= MAX_CONTEXT:
        raise InvalidInput("context_chars", "out of range", f"0 to {MAX_CONTEXT}")
    if isinstance(max_hits, bool) or not isinstance(max_hits, int) or not 1 <= max_hits <= MAX_HITS:
        raise InvalidInput("max_hits", "out of range", f"1 to {MAX_HITS}")
    hits: list[Hit] = []
    if not regex:
        if len(pattern) > MAX_PATTERN_CHARS:
            raise InvalidInput("pattern", "too long", f"at most {MAX_PATTERN_CHARS} characters")
        literal = re.compile(re.escape(pattern), re.IGNORECASE)
        for path, text in texts:
            for match in literal.finditer(text):
                hits.append(Hit(path, _snippet(text, match.start(), match.end(), context_chars), match.start()))
                if len(hits) >= max_hits:
                    return hits
        return hits
    compiled = safe_regex(pattern)
    deadline = time.monotonic() + DEADLINE_SECONDS
    for path, text in texts:
        seen: set[int] = set()
        for offset, chunk in _windows(text):
            if time.monotonic() > deadline:
                raise InvalidInput("pattern", "search took too long; use a simpler pattern or a literal search")
            for match in compiled.finditer(chunk):
                start = offset + match.start()
                if start in seen:
                    continue
                seen.add(start)
                hits.append(Hit(path, _snippet(text, start, offset + match.end(), context_chars), start))
                if len(hits) >= max_hits:
                    return hits
    return hits
