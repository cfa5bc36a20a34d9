"""The fhirpathpy fallback: full FHIRPath with the R4 model plus the functions SQL on FHIR v2 requires.

fhirpathpy 2.2 lacks getResourceKey, getReferenceKey, lowBoundary and highBoundary, returns only the first match of
extension(url), and has no `$this` at the root; this module evaluates parsed expressions with its own context so
those are added without patching the library. Values stay wrapped in ResourceNode (type known) between steps and
are unwrapped to plain JSON values only for columns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, cast

from fhirpathpy.engine import do_eval as _do_eval
from fhirpathpy.engine.invocations.constants import constants as _fp_constants
from fhirpathpy.engine.nodes import FP_Type, ResourceNode
from fhirpathpy.engine.util import get_data as _get_data
from fhirpathpy.models import models as fp_models
from fhirpathpy.parser import parse as _fp_parse

from fhirgate.analytics.sof.boundary import boundary
from fhirgate.analytics.sof.keys import reference_key, resource_key

# fhirpathpy ships py.typed but leaves these untyped: give them types once, here.
get_data: Callable[[Any], Any] = _get_data
do_eval = cast(Callable[[dict[str, Any], list[Any], Any], Any], _do_eval)
fp_parse = cast(Callable[[str], dict[str, Any]], _fp_parse)
create_node = cast(Callable[..., Any], ResourceNode.create_node)
reset_constants = cast(Callable[[], None], _fp_constants.reset)
_R4 = fp_models["r4"]
UCUM = "http://unitsofmeasure.org"


def _resource_key_fn(ctx: Any, data: list[Any]) -> list[Any]:
    return [k for k in (resource_key(get_data(n)) for n in data) if k is not None]


def _reference_key_fn(ctx: Any, data: list[Any], type_spec: Any = None) -> list[Any]:
    name = getattr(type_spec, "name", None) if type_spec is not None else None
    return [k for k in (reference_key(get_data(n), name) for n in data) if k is not None]


def _node_type(item: Any) -> str:
    if isinstance(item, ResourceNode):
        return str(item.path)
    if isinstance(item, int | float | Decimal):
        return "decimal"
    cls = type(item).__name__
    return {"FP_DateTime": "dateTime", "FP_Time": "time"}.get(cls, "")


def _boundary_fn(high: bool) -> Callable[..., list[Any]]:
    def fn(ctx: Any, data: list[Any]) -> list[Any]:
        out = []
        for item in data:
            raw = item.data if isinstance(item, ResourceNode) else item
            if isinstance(raw, FP_Type):
                raw = str(raw)
            value = boundary(raw, _node_type(item), high)
            if value is not None:
                out.append(value)
        return out

    return fn


def _extension_fn(ctx: Any, data: list[Any], url: Any) -> list[Any]:
    out = []
    for item in data:
        element = get_data(item)
        if isinstance(element, Mapping):
            for ext in element.get("extension") or ():
                if isinstance(ext, Mapping) and ext.get("url") == url:
                    out.append(create_node(ext, "Extension"))
    return out


def _join_fn(ctx: Any, data: list[Any], separator: Any = "") -> list[Any]:
    # FHIRPath 3.0 join(): the empty collection joins to '' (the official suite expects it; fhirpathpy gives {}).
    sep = separator if isinstance(separator, str) else ""
    return [sep.join(str(get_data(n)) for n in data)]


USER_FUNCTIONS: dict[str, dict[str, Any]] = {
    "join": {"fn": _join_fn, "arity": {0: [], 1: ["String"]}},
    "getResourceKey": {"fn": _resource_key_fn, "arity": {0: []}},
    "getReferenceKey": {"fn": _reference_key_fn, "arity": {0: [], 1: ["TypeSpecifier"]}},
    "lowBoundary": {"fn": _boundary_fn(False), "arity": {0: []}},
    "highBoundary": {"fn": _boundary_fn(True), "arity": {0: []}},
    "extension": {"fn": _extension_fn, "arity": {1: ["String"]}},
}


def parse(expression: str) -> dict[str, Any]:
    """fhirpathpy's parse tree; raises ValueError when fhirpathpy cannot read the expression either."""
    try:
        tree: dict[str, Any] = fp_parse(expression)
    except Exception as exc:
        raise ValueError(type(exc).__name__) from None
    return tree


def typed(value: Any, type_key: str | None) -> Any:
    """A focus value as fhirpathpy wants it: resources and typed values wrapped in a ResourceNode."""
    if isinstance(value, ResourceNode):
        return value
    if isinstance(value, dict) and "resourceType" in value:
        return create_node(value)
    if type_key is None:
        return value
    return create_node(value, type_key)


class FallbackExpression:
    """One FHIRPath expression evaluated by fhirpathpy; results stay ResourceNodes for further steps."""

    __slots__ = ("expression", "tree")

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.tree = parse(expression)

    def evaluate(self, focus: Any, variables: Mapping[str, Any]) -> list[Any]:
        """The result collection on one focus (already `typed`); raises whatever fhirpathpy raises."""
        reset_constants()
        root = [focus]
        ctx: dict[str, Any] = {
            "dataRoot": root,
            "vars": {"context": focus, "ucum": UCUM, **variables},
            "model": _R4,
            "userInvocationTable": USER_FUNCTIONS,
            "$this": root,
        }
        result = do_eval(ctx, root, self.tree["children"][0])
        return list(result) if isinstance(result, list) else [result]


def plain(items: list[Any]) -> list[Any]:
    """JSON values of a fhirpathpy result: nodes unwrapped, decimals as floats, temporal literals as text."""
    out: list[Any] = []
    for item in items:
        value = item.data if isinstance(item, ResourceNode) else item
        if isinstance(value, dict) and list(value) == ["extension"] and isinstance(item, ResourceNode):
            continue  # a primitive carrying only an extension has no value (fhirpathpy does the same)
        if isinstance(value, Decimal):
            value = (
                int(value) if value == value.to_integral_value() and value.as_tuple().exponent == 0 else float(value)
            )
        elif isinstance(value, FP_Type):
            value = str(value)
        out.append(value)
    return out
