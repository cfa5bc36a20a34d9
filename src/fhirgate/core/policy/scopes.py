"""SMART App Launch 2.x scope parsing: turns a token's scope string into grants the policy can check.

Grammar (SMART App Launch 2.x §"Scopes for requesting clinical data"):
`(patient|user|system)/(ResourceType|*).[c][r][u][d][s]`, the letters a non-empty subset of `cruds`
in that order, optionally followed by `?param=value(&param=value)*` (the v2 finer-grained
constraints). SMART v1 suffixes map to v2 letters: `.read` -> `rs`, `.write` -> `cud`, `.*` -> `cruds`
(SMART 2.x §"Scopes for requesting clinical data", v1 compatibility table).

Parsing a token is lenient and never raises: a malformed resource scope is recorded in
`ScopeSet.rejected` with a reason and grants nothing. `parse_scope` is the strict form for operator
input (CLI, dev issuer) and raises `InvalidInput`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, cast
from urllib.parse import quote, unquote

from fhirgate.errors import InvalidInput

Context = Literal["patient", "user", "system"]
CONTEXTS: frozenset[str] = frozenset({"patient", "user", "system"})
INTERACTION_ORDER = "cruds"
INTERACTIONS: frozenset[str] = frozenset(INTERACTION_ORDER)

# SMART 2.x §"Scopes for requesting context data" and §"Scopes for requesting identity data",
# §"Scopes for requesting a refresh token". These are kept on the ScopeSet but grant no data.
KNOWN_NON_RESOURCE_SCOPES: frozenset[str] = frozenset(
    {
        "openid",
        "fhirUser",
        "profile",
        "launch",
        "launch/patient",
        "launch/encounter",
        "offline_access",
        "online_access",
    }
)

# v1 suffix -> v2 letters (SMART 2.x, "Scopes for requesting clinical data", v1 compatibility).
V1_SUFFIXES: dict[str, str] = {"read": "rs", "write": "cud", "*": "cruds"}

_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}")
_LETTERS = re.compile(r"c?r?u?d?s?")
# A search parameter name, optionally with a modifier (`code:in`); FHIR R4 §3.1.1.4.
_PARAM_NAME = re.compile(r"_?[A-Za-z][A-Za-z0-9_\-.]*(:[A-Za-z][A-Za-z0-9\-]*)?")
# Anything shaped `word/Something.suffix` is treated as an attempted resource scope.
_RESOURCE_SHAPED = re.compile(r"[^/\s]+/[^\s]*\.[^\s]*")
_MAX_SCOPE_LENGTH = 1024
# Characters left as-is when writing a constraint value back out; '%', '&', '=', '?', '#' are escaped.
_SAFE = "|:/.,-_~!$'()*+;@"


@dataclass(frozen=True, slots=True)
class Scope:
    """One resource scope: who (`context`) may do what (`interactions`) on which type, with constraints.

    `constraints` are the v2 `?param=value` pairs, percent-decoded, in written order; a resource must
    match every pair of one scope for that scope to admit it.
    """

    context: Context
    resource_type: str  # a FHIR resource type, or '*'
    interactions: frozenset[str]  # subset of {'c','r','u','d','s'}
    constraints: tuple[tuple[str, str], ...]
    raw: str

    def covers(self, resource_type: str, interaction: str) -> bool:
        """True when this scope grants `interaction` on `resource_type`, ignoring constraints."""
        if interaction not in INTERACTIONS or interaction not in self.interactions:
            return False
        return self.resource_type in ("*", resource_type)

    @property
    def letters(self) -> str:
        """The interaction letters in canonical `cruds` order."""
        return "".join(ch for ch in INTERACTION_ORDER if ch in self.interactions)

    @property
    def canonical(self) -> str:
        """The scope rewritten in SMART v2 form (v1 suffixes expanded to letters)."""
        text = f"{self.context}/{self.resource_type}.{self.letters}"
        if self.constraints:
            text += "?" + "&".join(f"{name}={quote(value, safe=_SAFE)}" for name, value in self.constraints)
        return text


class _Malformed(Exception):
    """Internal: a resource-shaped scope that breaks the grammar; carries the reason."""


def _parse_constraints(query: str) -> tuple[tuple[str, str], ...]:
    """Parse the v2 `param=value(&param=value)*` tail; values are percent-decoded."""
    if not query:
        raise _Malformed("empty constraint after '?'")
    pairs: list[tuple[str, str]] = []
    for part in query.split("&"):
        name, sep, value = part.partition("=")
        if not sep:
            raise _Malformed(f"constraint {part!r} lacks '=' (expected param=value)")
        if not _PARAM_NAME.fullmatch(name):
            raise _Malformed(f"constraint parameter {name!r} is not a search parameter name")
        decoded = unquote(value)
        if not decoded:
            raise _Malformed(f"constraint parameter {name!r} has an empty value")
        pairs.append((name, decoded))
    return tuple(pairs)


def _parse_resource_scope(text: str) -> Scope:
    """Parse a scope already known to be resource-shaped; raise _Malformed with the reason."""
    context, _, rest = text.partition("/")
    if context not in CONTEXTS:
        raise _Malformed(f"context {context!r} is not one of patient, user, system")
    body, qmark, query = rest.partition("?")
    resource_type, dot, suffix = body.partition(".")
    if not dot:
        raise _Malformed("missing '.' between resource type and permissions")
    if resource_type != "*" and not _RESOURCE_TYPE.fullmatch(resource_type):
        raise _Malformed(f"resource type {resource_type!r} is not a FHIR resource type name or '*'")
    if suffix in V1_SUFFIXES:
        letters = V1_SUFFIXES[suffix]
    elif suffix and _LETTERS.fullmatch(suffix):
        letters = suffix
    else:
        raise _Malformed(
            f"permissions {suffix!r} must be a non-empty subset of 'cruds' in that order, or v1 'read', 'write', '*'"
        )
    constraints = _parse_constraints(query) if qmark else ()
    return Scope(
        context=cast(Context, context),
        resource_type=resource_type,
        interactions=frozenset(letters),
        constraints=constraints,
        raw=text,
    )


def _is_resource_shaped(text: str) -> bool:
    if text in KNOWN_NON_RESOURCE_SCOPES:
        return False
    head = text.partition("/")[0]
    return head in CONTEXTS or bool(_RESOURCE_SHAPED.fullmatch(text))


def parse_scope(text: str) -> Scope | None:
    """Parse one scope strictly: a Scope, None for a non-resource scope, InvalidInput if malformed."""
    if not isinstance(text, str) or not text or len(text) > _MAX_SCOPE_LENGTH:
        raise InvalidInput("scope", "must be a non-empty scope of at most 1024 characters")
    if any(ch.isspace() for ch in text):
        raise InvalidInput("scope", f"{text!r} contains whitespace; give one scope at a time")
    if not _is_resource_shaped(text):
        return None
    try:
        return _parse_resource_scope(text)
    except _Malformed as exc:
        raise InvalidInput(
            "scope",
            f"{text!r} is malformed: {exc}",
            "(patient|user|system)/(Type|*).[c][r][u][d][s][?param=value], e.g. patient/Observation.rs",
        ) from None


@dataclass(frozen=True, slots=True)
class ScopeSet:
    """The scopes a principal holds: resource grants, other scopes (no data), and rejected ones.

    `tokens` is every scope as given (order kept, duplicates dropped); `raw` the same joined by one
    space. `rejected` lists `(scope, reason)` for malformed resource scopes, which grant nothing.
    """

    resources: tuple[Scope, ...] = ()
    other: tuple[str, ...] = ()
    rejected: tuple[tuple[str, str], ...] = ()
    tokens: tuple[str, ...] = ()

    @classmethod
    def parse(cls, space_separated: str | None) -> ScopeSet:
        """Parse a token's `scope` claim leniently; never raises for any string input."""
        if not isinstance(space_separated, str):
            return cls()
        seen: dict[str, None] = {}
        for item in space_separated.split():
            seen.setdefault(item, None)
        resources: list[Scope] = []
        other: list[str] = []
        rejected: list[tuple[str, str]] = []
        for item in seen:
            if len(item) > _MAX_SCOPE_LENGTH:
                rejected.append((item[:64] + "...", "scope longer than 1024 characters"))
            elif not _is_resource_shaped(item):
                other.append(item)
            else:
                try:
                    resources.append(_parse_resource_scope(item))
                except _Malformed as exc:
                    rejected.append((item, str(exc)))
        return cls(tuple(resources), tuple(other), tuple(rejected), tuple(seen))

    @classmethod
    def of(cls, *scopes: str) -> ScopeSet:
        """Convenience for local profiles and tests: parse the given scopes leniently."""
        return cls.parse(" ".join(scopes))

    @property
    def raw(self) -> str:
        """All scopes as given, space separated (for audit and the MCP AccessToken)."""
        return " ".join(self.tokens)

    def granting(self, resource_type: str, interaction: str) -> tuple[Scope, ...]:
        """The resource scopes that cover `interaction` on `resource_type` (constraints not yet applied)."""
        return tuple(s for s in self.resources if s.covers(resource_type, interaction))

    def has_context(self, context: str) -> bool:
        """True when any resource scope has this context (`patient`, `user` or `system`)."""
        return any(s.context == context for s in self.resources)

    def __contains__(self, scope: object) -> bool:
        return scope in self.tokens

    def __bool__(self) -> bool:
        return bool(self.tokens)
