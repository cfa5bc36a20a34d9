"""A tiny stand-in for fhirgate.analytics.sof, used ONLY by these tests until the real engine is importable.

It covers what the built-in views use (column, select, forEach, forEachOrNull, where) through fhirpathpy.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from fhirpathpy import evaluate
from fhirpathpy.models import models

from fhirgate.errors import FhirgateError

_R4 = models["r4"]


class ViewDefinitionError(FhirgateError):
    """Stand-in error."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str | None
    collection: bool


@dataclass
class ViewDefinition:
    data: dict[str, Any]
    columns: list[Column]
    resource: str
    name: str | None


def _cols(select: list[dict[str, Any]]) -> list[Column]:
    out: list[Column] = []
    for s in select:
        out += [Column(c["name"], c.get("type"), bool(c.get("collection"))) for c in s.get("column", [])]
        out += _cols(s.get("select", []))
        if s.get("unionAll"):
            out += _cols(s["unionAll"][:1])
    return out


def load_view(data: Any) -> ViewDefinition:
    if isinstance(data, str | Path):
        data = orjson.loads(Path(data).read_bytes())
    if not isinstance(data, dict) or data.get("resourceType") != "ViewDefinition":
        raise ViewDefinitionError("not a ViewDefinition")
    if not isinstance(data.get("resource"), str) or not isinstance(data.get("select"), list):
        raise ViewDefinitionError("resource and select are required")
    cols = _cols(data["select"])
    names = [c.name for c in cols]
    if len(set(names)) != len(names):
        raise ViewDefinitionError("duplicate column names")
    return ViewDefinition(data, cols, data["resource"], data.get("name"))


def _value(v: Any) -> Any:
    if isinstance(v, Decimal):
        return float(v)
    if v is None or isinstance(v, str | int | float | bool):
        return v
    return str(v)


def compile_view(view: ViewDefinition) -> Callable[[dict[str, Any]], list[tuple[Any, ...]]]:
    def run(resource: dict[str, Any]) -> list[tuple[Any, ...]]:
        table = {
            "getResourceKey": {"fn": lambda ctx: [resource.get("id")], "arity": {0: []}},
            "getReferenceKey": {
                "fn": lambda coll, t=None: [
                    x["reference"].split("/")[-1]
                    for x in coll
                    if isinstance(x, dict)
                    and isinstance(x.get("reference"), str)
                    and (t is None or x["reference"].split("/")[-2:-1] == [str(t)])
                ],
                "arity": {0: [], 1: ["Identifier"]},
            },
        }

        def ev(node: Any, path: str) -> list[Any]:
            return list(evaluate(node, path, model=_R4, options={"userInvocationTable": table}))

        def rows(s: dict[str, Any], node: Any) -> list[dict[str, Any]]:
            if "forEach" in s:
                nodes = ev(node, s["forEach"])
            elif "forEachOrNull" in s:
                nodes = ev(node, s["forEachOrNull"]) or [None]
            else:
                nodes = [node]
            out: list[dict[str, Any]] = []
            for n in nodes:
                base: dict[str, Any] = {}
                for c in s.get("column", []):
                    vals = [] if n is None else ev(n, c["path"])
                    base[c["name"]] = (
                        [_value(v) for v in vals] if c.get("collection") else (_value(vals[0]) if vals else None)
                    )
                part = [base]
                for sub in s.get("select", []):
                    part = [{**a, **b} for a in part for b in rows(sub, n)] if n is not None else part
                out += part
            return out

        if any(not ev(resource, w["path"]) or ev(resource, w["path"]) == [False] for w in view.data.get("where", [])):
            return []
        result = [{}]
        for s in view.data["select"]:
            result = [{**a, **b} for a in result for b in rows(s, resource)]
        names = [c.name for c in view.columns]
        return [tuple(r.get(n) for n in names) for r in result]

    return run


def install() -> None:
    """Register this module as fhirgate.analytics.sof unless the real engine imports."""
    try:
        from fhirgate.analytics.sof import compile_view, load_view  # noqa: F401

        return
    except ImportError:
        pass
    mod = types.ModuleType("fhirgate.analytics.sof")
    for name in ("ViewDefinitionError", "Column", "ViewDefinition", "load_view", "compile_view"):
        setattr(mod, name, globals()[name])
    sys.modules["fhirgate.analytics.sof"] = mod
