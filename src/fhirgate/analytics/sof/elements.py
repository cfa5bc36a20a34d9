"""Static FHIR R4 element types for the view compiler, read from the model tables fhirpathpy ships.

A type key is either a FHIR type name (`HumanName`, `dateTime`, `System.String`) or, for backbone elements, the
element's full path (`Patient.contact`), the same convention fhirpathpy uses for ResourceNode.path, so a value the
compiler reached can be handed to fhirpathpy with its type intact.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

STRING_TYPES = frozenset(
    {"string", "code", "id", "uri", "url", "canonical", "oid", "uuid", "markdown", "base64Binary", "xhtml"}
    | {"System.String"}
)
INTEGER_TYPES = frozenset({"integer", "positiveInt", "unsignedInt", "integer64", "System.Integer"})
DECIMAL_TYPES = frozenset({"decimal", "System.Decimal"})
NUMBER_TYPES = INTEGER_TYPES | DECIMAL_TYPES
BOOLEAN_TYPES = frozenset({"boolean", "System.Boolean"})
TEMPORAL_TYPES = frozenset({"date", "dateTime", "instant", "time", "System.Date", "System.DateTime", "System.Time"})
PRIMITIVE_TYPES = STRING_TYPES | NUMBER_TYPES | BOOLEAN_TYPES | TEMPORAL_TYPES


@dataclass(frozen=True, slots=True)
class Element:
    """What a member name resolves to: one type, or a choice element `name[x]` with its JSON suffixes."""

    type: str | None
    choices: tuple[str, ...] = ()

    @property
    def is_choice(self) -> bool:
        """True for `value[x]`-style elements, stored in JSON as name + type suffix."""
        return bool(self.choices)


@cache
def _model() -> dict[str, Any]:
    from fhirpathpy.models import models

    model: dict[str, Any] = models["r4"]
    return model


@cache
def _backbone_paths() -> frozenset[str]:
    """Element paths with children but no entry in path2Type: the BackboneElements."""
    path2type: dict[str, str] = _model()["path2Type"]
    out: set[str] = set()
    for path in path2type:
        parts = path.split(".")
        for i in range(2, len(parts)):
            prefix = ".".join(parts[:i])
            if prefix not in path2type:
                out.add(prefix)
    return frozenset(out)


def is_resource_type(name: str) -> bool:
    """True when `name` is an R4 resource type (a descendant of Resource)."""
    parents: dict[str, str] = _model()["type2Parent"]
    t: str | None = name
    while t:
        if t == "Resource":
            return name != "Resource" and name not in ("DomainResource", "MetadataResource")
        t = parents.get(t)
    return False


def choice_type(suffix: str) -> str:
    """The type of a choice suffix: `DateTime` → `dateTime`, `Quantity` stays."""
    lowered = suffix[0].lower() + suffix[1:]
    return lowered if lowered in PRIMITIVE_TYPES else suffix


def member(type_key: str | None, name: str) -> Element | None:
    """The element `name` of a value of static type `type_key`, or None when the model does not know it."""
    if not type_key or type_key in PRIMITIVE_TYPES:
        return None
    return _member(type_key, name)


@cache
def _member(type_key: str, name: str) -> Element | None:
    model = _model()
    path2type: dict[str, str] = model["path2Type"]
    choices: dict[str, list[str]] = model["choiceTypePaths"]
    elsewhere: dict[str, str] = model["pathsDefinedElsewhere"]
    parents: dict[str, str] = model["type2Parent"]
    backbone = _backbone_paths()
    t: str | None = type_key
    while t:
        path = f"{t}.{name}"
        if path in choices:
            return Element(None, tuple(choices[path]))
        if path in elsewhere:
            return Element(elsewhere[path])
        typ = path2type.get(path)
        if typ in ("BackboneElement", "Element"):
            return Element(path)
        if typ is not None:
            return Element(typ)
        if path in backbone:
            return Element(path)
        t = "BackboneElement" if t in backbone or "." in t else parents.get(t)
    return None
