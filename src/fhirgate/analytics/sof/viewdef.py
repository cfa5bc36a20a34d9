"""Parse and validate an SQL on FHIR v2 ViewDefinition; every error names the JSON path of the problem.

Rules enforced (SQL on FHIR v2, ViewDefinition logical model and "Validating a ViewDefinition"):
resource is a FHIR resource type; names match sql-name `^[A-Za-z][A-Za-z0-9_]*$`; column names are unique across the
view; a select has at most one of forEach / forEachOrNull / repeat; every unionAll branch has the same columns in the
same order; a constant has exactly one value[x]; every path is FHIRPath and reads only defined `%constants`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fhirgate.analytics.sof import fhirpath
from fhirgate.analytics.sof.elements import is_resource_type
from fhirgate.analytics.sof.errors import ViewDefinitionError
from fhirgate.core.fhir import fhirpath_ast as pathparse

SQL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
STATUSES = frozenset({"draft", "active", "retired", "unknown"})
# ViewDefinition.constant.value[x] types and the JSON type each must have.
CONSTANT_TYPES: dict[str, tuple[type, ...]] = {
    "Base64Binary": (str,),
    "Boolean": (bool,),
    "Canonical": (str,),
    "Code": (str,),
    "Date": (str,),
    "DateTime": (str,),
    "Decimal": (int, float),
    "Id": (str,),
    "Instant": (str,),
    "Integer": (int,),
    "Integer64": (int, str),
    "Oid": (str,),
    "String": (str,),
    "PositiveInt": (int,),
    "Time": (str,),
    "UnsignedInt": (int,),
    "Uri": (str,),
    "Url": (str,),
    "Uuid": (str,),
}
# Environment variables a path may read besides the view's constants (FHIRPath §11, SQL on FHIR %rowIndex).
BUILTIN_VARIABLES = frozenset({"rowIndex", "resource", "rootResource", "context", "ucum", "sct", "loinc"})
_VAR_RE = re.compile(r"%([A-Za-z_][A-Za-z0-9_]*|`[^`]*`)")
_STRING_RE = re.compile(r"'(?:[^'\\]|\\.)*'")


@dataclass(frozen=True, slots=True)
class Column:
    """One output column: name, FHIR type hint, whether it holds an array, and its FHIRPath."""

    name: str
    type: str | None
    collection: bool
    path: str
    location: str
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Constant:
    """A `%name` constant: its value and FHIR type (`string`, `integer`, `dateTime`...)."""

    name: str
    value: Any
    type: str


@dataclass(frozen=True, slots=True)
class Select:
    """One select structure; `location` is its JSON path."""

    location: str
    columns: tuple[Column, ...]
    selects: tuple[Select, ...]
    union_all: tuple[Select, ...]
    for_each: str | None = None
    for_each_or_null: str | None = None
    repeat: tuple[str, ...] = ()

    @property
    def all_columns(self) -> tuple[Column, ...]:
        """Output columns in order: own columns, then nested selects', then the first unionAll branch's."""
        out = list(self.columns)
        for sub in self.selects:
            out.extend(sub.all_columns)
        if self.union_all:
            out.extend(self.union_all[0].all_columns)
        return tuple(out)


@dataclass(frozen=True, slots=True)
class ViewDefinition:
    """A validated ViewDefinition: resource type, name, constants, where paths and the select tree."""

    resource: str
    name: str | None
    select: tuple[Select, ...]
    where: tuple[str, ...]
    constants: tuple[Constant, ...]
    raw: Mapping[str, Any] = field(repr=False)
    status: str | None = None

    @property
    def columns(self) -> list[Column]:
        """Every output column in output order."""
        out: list[Column] = []
        for sel in self.select:
            out.extend(sel.all_columns)
        return out

    @property
    def column_names(self) -> list[str]:
        """Output column names in order."""
        return [c.name for c in self.columns]

    @property
    def constant_values(self) -> dict[str, Any]:
        """Constant name → value."""
        return {c.name: c.value for c in self.constants}


def load_view(data: Mapping[str, Any] | str | os.PathLike[str]) -> ViewDefinition:
    """A validated ViewDefinition from a mapping or a JSON file; raises ViewDefinitionError naming the problem."""
    if not isinstance(data, Mapping):
        path = Path(data)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ViewDefinitionError("$", f"cannot read file {path.name}: {exc.strerror}") from None
        except (ValueError, UnicodeDecodeError):
            raise ViewDefinitionError("$", f"file {path.name} is not JSON") from None
        if not isinstance(data, Mapping):
            raise ViewDefinitionError("$", "must be a JSON object")
    return _Validator(data).view()


class _Validator:
    """One pass over the JSON, collecting nothing: the first problem raises."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        self.constant_names: set[str] = set()

    def view(self) -> ViewDefinition:
        data = self.data
        if data.get("resourceType", "ViewDefinition") != "ViewDefinition":
            raise ViewDefinitionError("resourceType", "must be ViewDefinition")
        resource = data.get("resource")
        if not isinstance(resource, str) or not resource:
            raise ViewDefinitionError("resource", "is required: the FHIR resource type the view reads")
        if not is_resource_type(resource):
            raise ViewDefinitionError("resource", f"{resource!r} is not a FHIR R4 resource type")
        name = data.get("name")
        if name is not None and (not isinstance(name, str) or not SQL_NAME.match(name)):
            raise ViewDefinitionError("name", "must match ^[A-Za-z][A-Za-z0-9_]*$")
        status = data.get("status")
        if status is not None and status not in STATUSES:
            raise ViewDefinitionError("status", f"must be one of {', '.join(sorted(STATUSES))}")
        constants = tuple(self.constant(c, f"constant[{i}]") for i, c in enumerate(self.array(data, "constant", "")))
        wheres: list[str] = []
        for i, item in enumerate(self.array(data, "where", "")):
            loc = f"where[{i}]"
            if not isinstance(item, Mapping):
                raise ViewDefinitionError(loc, "must be an object with a path")
            wheres.append(self.path(item.get("path"), f"{loc}.path"))
        selects = self.array(data, "select", "")
        if not selects:
            raise ViewDefinitionError("select", "is required: at least one select")
        tree = tuple(self.select(s, f"select[{i}]") for i, s in enumerate(selects))
        view = ViewDefinition(resource, name, tree, tuple(wheres), constants, data, status)
        seen: set[str] = set()
        for col in view.columns:
            if col.name in seen:
                raise ViewDefinitionError(f"{col.location}.name", f"column {col.name!r} is already defined")
            seen.add(col.name)
        return view

    def array(self, obj: Mapping[str, Any], key: str, loc: str) -> list[Any]:
        value = obj.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise ViewDefinitionError(f"{loc}{'.' if loc else ''}{key}", "must be an array")
        return value

    def constant(self, item: Any, loc: str) -> Constant:
        if not isinstance(item, Mapping):
            raise ViewDefinitionError(loc, "must be an object")
        name = item.get("name")
        if not isinstance(name, str) or not SQL_NAME.match(name):
            raise ViewDefinitionError(f"{loc}.name", "is required and must match ^[A-Za-z][A-Za-z0-9_]*$")
        if name in self.constant_names:
            raise ViewDefinitionError(f"{loc}.name", f"constant {name!r} is already defined")
        values = [k for k in item if k.startswith("value")]
        if len(values) != 1:
            raise ViewDefinitionError(loc, "must have exactly one value[x]")
        suffix = values[0][5:]
        allowed = CONSTANT_TYPES.get(suffix)
        if allowed is None:
            raise ViewDefinitionError(f"{loc}.{values[0]}", f"unsupported constant type {suffix!r}")
        value = item[values[0]]
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise ViewDefinitionError(f"{loc}.{values[0]}", f"value does not have the JSON type of {suffix}")
        self.constant_names.add(name)
        return Constant(name, value, suffix[0].lower() + suffix[1:])

    def path(self, value: Any, loc: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ViewDefinitionError(loc, "must be a FHIRPath expression (a non-empty string)")
        try:
            names = pathparse.variables(pathparse.parse(value))
        except pathparse.PathSyntaxError:
            try:
                fhirpath.parse(value)
            except ValueError:
                raise ViewDefinitionError(loc, "is not a valid FHIRPath expression") from None
            names = {m.strip("`") for m in _VAR_RE.findall(_STRING_RE.sub("''", value))}
        for var in sorted(names):
            if var in self.constant_names or var in BUILTIN_VARIABLES or var.startswith(("vs-", "ext-")):
                continue
            raise ViewDefinitionError(loc, f"reads undefined constant %{var}")
        return value

    def select(self, item: Any, loc: str) -> Select:
        if not isinstance(item, Mapping):
            raise ViewDefinitionError(loc, "must be an object")
        iterators = [k for k in ("forEach", "forEachOrNull", "repeat") if item.get(k) is not None]
        if len(iterators) > 1:
            raise ViewDefinitionError(loc, f"has both {iterators[0]} and {iterators[1]}; at most one is allowed")
        for_each = self.path(item["forEach"], f"{loc}.forEach") if "forEach" in item else None
        or_null = self.path(item["forEachOrNull"], f"{loc}.forEachOrNull") if "forEachOrNull" in item else None
        repeat: tuple[str, ...] = ()
        if "repeat" in item:
            paths = item["repeat"]
            if not isinstance(paths, list) or not paths:
                raise ViewDefinitionError(f"{loc}.repeat", "must be a non-empty array of FHIRPath expressions")
            repeat = tuple(self.path(p, f"{loc}.repeat[{i}]") for i, p in enumerate(paths))
        columns = tuple(self.column(c, f"{loc}.column[{i}]") for i, c in enumerate(self.array(item, "column", loc)))
        selects = tuple(self.select(s, f"{loc}.select[{i}]") for i, s in enumerate(self.array(item, "select", loc)))
        branches = tuple(
            self.select(s, f"{loc}.unionAll[{i}]") for i, s in enumerate(self.array(item, "unionAll", loc))
        )
        if branches:
            first = [c.name for c in branches[0].all_columns]
            for branch in branches[1:]:
                names = [c.name for c in branch.all_columns]
                if names != first:
                    raise ViewDefinitionError(
                        branch.location, f"unionAll branches must have the same columns in order: {first} vs {names}"
                    )
        return Select(loc, columns, selects, branches, for_each, or_null, repeat)

    def column(self, item: Any, loc: str) -> Column:
        if not isinstance(item, Mapping):
            raise ViewDefinitionError(loc, "must be an object")
        name = item.get("name")
        if not isinstance(name, str) or not SQL_NAME.match(name):
            raise ViewDefinitionError(f"{loc}.name", "is required and must match ^[A-Za-z][A-Za-z0-9_]*$")
        path = self.path(item.get("path"), f"{loc}.path")
        type_hint = item.get("type")
        if type_hint is not None and (not isinstance(type_hint, str) or not type_hint):
            raise ViewDefinitionError(f"{loc}.type", "must be a FHIR type name")
        collection = item.get("collection", False)
        if not isinstance(collection, bool):
            raise ViewDefinitionError(f"{loc}.collection", "must be true or false")
        description = item.get("description")
        return Column(name, type_hint, collection, path, loc, description if isinstance(description, str) else None)
