"""The curated synonym list (synonyms.toml): common clinician words for labs, vitals, conditions, drugs and vaccines
mapped to their codes, checked when loaded so a bad entry fails at start, never mid-request.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from fhirgate.errors import ConfigError
from fhirgate.terminology import icd10cm
from fhirgate.terminology.matching import tokens
from fhirgate.terminology.systems import ICD10CM, SYSTEMS

KINDS = ("lab", "vital", "condition", "drug", "vaccine")
_CODE = re.compile(r"[A-Za-z0-9.\-]{1,32}")
RESOURCE = "synonyms.toml"


@dataclass(frozen=True, slots=True)
class SynonymCode:
    """One code a concept maps to: canonical system URI, code and display."""

    system: str
    code: str
    display: str


@dataclass(frozen=True, slots=True)
class Concept:
    """A clinician's concept: its name, kind, the words that name it and the codes it maps to."""

    name: str
    kind: str
    terms: tuple[str, ...]
    codes: tuple[SynonymCode, ...]


def _code(entry: Any, where: str) -> SynonymCode:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: each code must be a table {{system, code, display}}")
    alias, code = entry.get("system"), entry.get("code")
    system = SYSTEMS.get(alias) if isinstance(alias, str) else None
    if system is None:
        raise ConfigError(f"{where}: unknown system (allowed: {', '.join(SYSTEMS)})")
    if not isinstance(code, str) or not _CODE.fullmatch(code):
        raise ConfigError(f"{where}: code must be 1-32 of A-Z a-z 0-9 . -")
    if system == ICD10CM:
        # ICD-10-CM displays come from the CMS tables, so they cannot drift from them.
        found = icd10cm.item(code)
        if found is None:
            raise ConfigError(f"{where}: {code} is not an ICD-10-CM code")
        return SynonymCode(system, found.code, found.display)
    shown = entry.get("display")
    if not isinstance(shown, str) or not shown.strip():
        raise ConfigError(f"{where}: display is required for {alias} codes")
    return SynonymCode(system, code, shown.strip())


def parse_concepts(data: dict[str, Any]) -> tuple[Concept, ...]:
    """Concepts from the parsed TOML; ConfigError names the first bad entry."""
    raw = data.get("concept")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{RESOURCE}: expected [[concept]] tables")
    out: list[Concept] = []
    for index, item in enumerate(raw):
        where = f"{RESOURCE} concept {index + 1}"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: not a table")
        name, kind, terms, codes = item.get("name"), item.get("kind"), item.get("terms"), item.get("codes")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}: name is required")
        if kind not in KINDS:
            raise ConfigError(f"{where}: kind must be one of {', '.join(KINDS)}")
        if not isinstance(terms, list) or not terms or not all(isinstance(t, str) and tokens(t) for t in terms):
            raise ConfigError(f"{where}: terms must be a non-empty list of words")
        if not isinstance(codes, list) or not codes:
            raise ConfigError(f"{where}: codes must be a non-empty list")
        out.append(Concept(name, str(kind), tuple(terms), tuple(_code(c, where) for c in codes)))
    return tuple(out)


@lru_cache(maxsize=1)
def concepts() -> tuple[Concept, ...]:
    """The shipped synonym list (package data), parsed and checked once."""
    text = resources.files("fhirgate.terminology").joinpath(RESOURCE).read_text(encoding="utf-8")
    return parse_concepts(tomllib.loads(text))


def curated_codes() -> dict[tuple[str, str], SynonymCode]:
    """Every (system, code) the list names, with its display."""
    return {(c.system, c.code): c for concept in concepts() for c in concept.codes}
