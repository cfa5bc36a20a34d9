"""Compile the common subset of FHIRPath into Python closures over the resource JSON (the fast path).

A compiled expression is `fn(focus, row_index) -> list` and carries the static FHIR type of its items (from the R4
model), which is what makes `value.ofType(Quantity)` → `valueQuantity` and boundary types decidable up front.
Anything outside the subset, or whose types are not known statically, raises Unsupported and that one expression
is evaluated by fhirpathpy instead; both paths run the whole official suite in the tests, so they must agree.
Subset: member paths, `$this`, `[n]`, literals, constants, %rowIndex, where, exists, empty, first, last, count,
not, join, extension, ofType on choice elements, getResourceKey, getReferenceKey, lowBoundary, highBoundary,
`= != < > <= >=` on strings, numbers and booleans, and `and or xor implies` on booleans.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fhirgate.analytics.sof import elements
from fhirgate.analytics.sof.boundary import boundary
from fhirgate.analytics.sof.elements import BOOLEAN_TYPES, NUMBER_TYPES, STRING_TYPES, TEMPORAL_TYPES
from fhirgate.analytics.sof.keys import reference_key, resource_key
from fhirgate.analytics.sof.pathops import LOGIC, ORDER, EvaluationFailure, Fn, Steps, path_fn, single_bool, step
from fhirgate.analytics.sof.scalar import scalar_values
from fhirgate.analytics.sof.viewdef import Constant
from fhirgate.core.fhir import fhirpath_ast as pathparse
from fhirgate.core.fhir.fhirpath_ast import (
    Binary,
    Call,
    Ident,
    Indexer,
    Literal,
    Member,
    Node,
    Special,
    Var,
)

Walk = tuple[tuple[Any, ...], ...]
_BOOL = "System.Boolean"
_LITERAL_TYPES = {"string": "System.String", "integer": "System.Integer", "decimal": "System.Decimal", "boolean": _BOOL}


class Unsupported(Exception):
    """The expression is outside the compiled subset; evaluate it with fhirpathpy."""


@dataclass(frozen=True, slots=True)
class Compiled:
    """A compiled expression, the static type of its items, and its member steps when it is a plain path."""

    fn: Fn
    type: str | None
    steps: Steps | None = None
    walk: Walk | None = None


def _category(type_key: str | None) -> str | None:
    if type_key in STRING_TYPES:
        return "string"
    if type_key in NUMBER_TYPES:
        return "number"
    if type_key in BOOLEAN_TYPES:
        return "boolean"
    return None


class Compiler:
    """Compiles expressions of one view: its constants and the resource type it reads."""

    def __init__(self, constants: Mapping[str, Constant]) -> None:
        self.constants = constants

    def compile(self, expression: str, focus_type: str | None) -> Compiled:
        """The compiled expression on a focus of static type `focus_type`; raises Unsupported."""
        try:
            tree = pathparse.parse(expression)
        except pathparse.PathSyntaxError:
            raise Unsupported("syntax outside the parser") from None
        return self.fast(self.node(tree, focus_type))

    @staticmethod
    def fast(c: Compiled) -> Compiled:
        """The same expression with its walk (if any) generated as straight-line code."""
        if c.walk is None or not any(op[0] == "key" for op in c.walk):
            return c
        return Compiled(scalar_values(c.walk, c.fn), c.type, c.steps, c.walk)

    def node(self, n: Node, focus: str | None) -> Compiled:
        """Dispatch on the AST node kind."""
        if isinstance(n, Literal):
            return self.literal(n)
        if isinstance(n, Var):
            return self.variable(n)
        if isinstance(n, Special):
            if n.name != "$this":
                raise Unsupported(n.name)
            return self.this(focus)
        if isinstance(n, Ident):
            if focus is not None and n.name == focus and elements.is_resource_type(focus):
                return self.this(focus)
            return self.member(self.this(focus), n.name)
        if isinstance(n, Member):
            return self.member(self.node(n.base, focus), n.name)
        if isinstance(n, Indexer):
            return self.indexer(self.node(n.base, focus), n.index)
        if isinstance(n, Call):
            return self.call(n, focus)
        if isinstance(n, Binary):
            return self.binary(n, focus)
        raise Unsupported(type(n).__name__)

    def this(self, focus: str | None) -> Compiled:
        if focus is None:
            raise Unsupported("focus type unknown")

        def fn(f: Any, idx: int) -> list[Any]:
            return [] if f is None else [f]

        return Compiled(fn, focus, (), ())

    def literal(self, n: Literal) -> Compiled:
        if n.kind not in _LITERAL_TYPES:
            raise Unsupported(f"{n.kind} literal")
        value = float(n.value) if n.kind == "decimal" else n.value
        return Compiled(lambda f, idx: [value], _LITERAL_TYPES[n.kind])

    def variable(self, n: Var) -> Compiled:
        if n.name == "rowIndex":
            return Compiled(lambda f, idx: [idx], "System.Integer")
        const = self.constants.get(n.name)
        if const is None:
            raise Unsupported(f"%{n.name}")
        value = const.value
        return Compiled(lambda f, idx: [value], const.type)

    def member(self, base: Compiled, name: str) -> Compiled:
        element = elements.member(base.type, name)
        if element is None:
            raise Unsupported(f"member {name} of {base.type}")
        if element.is_choice:
            keys = tuple(name + c for c in element.choices)
            return self.extend(base, keys, None)
        return self.extend(base, (name,), element.type)

    def extend(self, base: Compiled, keys: tuple[str, ...], type_key: str | None) -> Compiled:
        walk = (*base.walk, ("key", keys[0])) if base.walk is not None and len(keys) == 1 else None
        if base.steps is not None:
            steps = (*base.steps, keys)
            return Compiled(path_fn(steps), type_key, steps, walk)
        base_fn = base.fn
        return Compiled(lambda f, idx: step(base_fn(f, idx), keys), type_key, None, walk)

    def indexer(self, base: Compiled, index: Node) -> Compiled:
        if isinstance(index, Literal) and index.kind == "integer":
            pos = int(index.value)
        elif isinstance(index, Var) and index.name in self.constants and self.constants[index.name].type == "integer":
            pos = int(self.constants[index.name].value)
        else:
            raise Unsupported("computed index")
        base_fn = base.fn
        walk = (*base.walk, ("first",)) if base.walk is not None and pos == 0 else None
        return Compiled(lambda f, idx: base_fn(f, idx)[pos : pos + 1], base.type, None, walk)

    def call(self, n: Call, focus: str | None) -> Compiled:
        name, args = n.name, n.args
        if name == "ofType" and len(args) == 1:
            return self.of_type(n.base, args[0], focus)
        base = self.node(n.base, focus) if n.base is not None else self.this(focus)
        bfn = base.fn
        if name == "where" and len(args) == 1:
            crit = self.boolean(args[0], base.type)
            return Compiled(lambda f, idx: [x for x in bfn(f, idx) if crit(x, idx) == [True]], base.type)
        if name == "exists" and len(args) <= 1:
            if args:
                crit = self.boolean(args[0], base.type)
                return Compiled(lambda f, idx: [any(crit(x, idx) == [True] for x in bfn(f, idx))], _BOOL)
            return Compiled(lambda f, idx: [len(bfn(f, idx)) > 0], _BOOL)
        if args and name not in ("join", "extension", "getReferenceKey"):
            raise Unsupported(f"{name} with arguments")
        if name == "empty":
            return Compiled(lambda f, idx: [len(bfn(f, idx)) == 0], _BOOL)
        if name == "first":
            walk = (*base.walk, ("first",)) if base.walk is not None else None
            return Compiled(lambda f, idx: bfn(f, idx)[:1], base.type, None, walk)
        if name == "last":
            return Compiled(lambda f, idx: bfn(f, idx)[-1:], base.type)
        if name == "count":
            return Compiled(lambda f, idx: [len(bfn(f, idx))], "System.Integer")
        if name == "not":
            if base.type not in BOOLEAN_TYPES:
                raise Unsupported("not() of a non-boolean")

            def negate(f: Any, idx: int) -> list[Any]:
                value = single_bool(bfn(f, idx))
                return [] if value is None else [not value]

            return Compiled(negate, _BOOL)
        if name == "join":
            return self.join(base, args)
        if name == "extension":
            return self.extension(base, args)
        if name == "getResourceKey":
            if base.type is None or not elements.is_resource_type(base.type):
                raise Unsupported("getResourceKey() off a resource")
            walk = (("call", resource_key),) if base.walk == () else None
            return Compiled(
                lambda f, idx: [k for k in map(resource_key, bfn(f, idx)) if k is not None], "id", None, walk
            )
        if name == "getReferenceKey":
            return self.reference_key(base, args)
        if name in ("lowBoundary", "highBoundary"):
            return self.boundary(base, name == "highBoundary")
        raise Unsupported(f"function {name}")

    def boolean(self, arg: Node, focus: str | None) -> Fn:
        crit = self.node(arg, focus)
        if crit.type not in BOOLEAN_TYPES:
            raise Unsupported("criteria not statically boolean")
        return crit.fn

    def of_type(self, base_node: Node | None, arg: Node, focus: str | None) -> Compiled:
        if isinstance(arg, Member) and isinstance(arg.base, Ident) and arg.base.name == "FHIR":
            arg = Ident(arg.name)
        if not isinstance(arg, Ident):
            raise Unsupported("ofType argument")
        type_name = arg.name
        if isinstance(base_node, Member | Ident):
            owner = self.node(base_node.base, focus) if isinstance(base_node, Member) else self.this(focus)
            element = elements.member(owner.type, base_node.name)
            if element is not None and element.is_choice:
                suffix = type_name[0].upper() + type_name[1:]
                if suffix not in element.choices:
                    raise Unsupported("ofType with a type the choice does not allow")
                return self.extend(owner, (base_node.name + suffix,), elements.choice_type(suffix))
        base = self.node(base_node, focus) if base_node is not None else self.this(focus)
        if base.type == type_name:
            return base
        raise Unsupported("ofType on a non-choice element")

    def join(self, base: Compiled, args: tuple[Node, ...]) -> Compiled:
        if base.type not in STRING_TYPES or len(args) > 1:
            raise Unsupported("join")
        sep = ""
        if args:
            arg = args[0]
            if isinstance(arg, Literal) and arg.kind == "string":
                sep = arg.value
            elif (
                isinstance(arg, Var) and arg.name in self.constants and isinstance(self.constants[arg.name].value, str)
            ):
                sep = self.constants[arg.name].value
            else:
                raise Unsupported("join separator")
        bfn = base.fn
        return Compiled(lambda f, idx: [sep.join(bfn(f, idx))], "System.String")

    def extension(self, base: Compiled, args: tuple[Node, ...]) -> Compiled:
        if len(args) != 1 or not isinstance(args[0], Literal) or args[0].kind != "string":
            raise Unsupported("extension url")
        if base.type is None or base.type in elements.PRIMITIVE_TYPES:
            raise Unsupported("extension on a primitive")
        url = args[0].value
        bfn = base.fn

        def fn(f: Any, idx: int) -> list[Any]:
            out = []
            for item in bfn(f, idx):
                if item.__class__ is dict:
                    for ext in item.get("extension") or ():
                        if ext.__class__ is dict and ext.get("url") == url:
                            out.append(ext)
            return out

        return Compiled(fn, "Extension")

    def reference_key(self, base: Compiled, args: tuple[Node, ...]) -> Compiled:
        if base.type != "Reference" or len(args) > 1:
            raise Unsupported("getReferenceKey off a Reference")
        type_name: str | None = None
        if args:
            if not isinstance(args[0], Ident):
                raise Unsupported("getReferenceKey type")
            type_name = args[0].name
        bfn = base.fn

        def fn(f: Any, idx: int) -> list[Any]:
            return [k for k in (reference_key(r, type_name) for r in bfn(f, idx)) if k is not None]

        def key_of(ref: Any) -> str | None:
            return reference_key(ref, type_name)

        walk = (*base.walk, ("call", key_of)) if base.walk is not None else None
        return Compiled(fn, "id", None, walk)

    def boundary(self, base: Compiled, high: bool) -> Compiled:
        type_key = base.type
        if type_key is None or (type_key not in TEMPORAL_TYPES and type_key not in NUMBER_TYPES):
            raise Unsupported("boundary of an unknown type")
        bfn = base.fn
        out_type = "decimal" if type_key in NUMBER_TYPES else type_key

        def fn(f: Any, idx: int) -> list[Any]:
            return [b for b in (boundary(v, type_key, high) for v in bfn(f, idx)) if b is not None]

        return Compiled(fn, out_type)

    def binary(self, n: Binary, focus: str | None) -> Compiled:
        left = self.fast(self.node(n.left, focus))
        right = self.fast(self.node(n.right, focus))
        lfn, rfn = left.fn, right.fn
        if n.op in ("and", "or", "xor", "implies"):
            if left.type not in BOOLEAN_TYPES or right.type not in BOOLEAN_TYPES:
                raise Unsupported("logic on non-booleans")
            logic = LOGIC[n.op]
            return Compiled(lambda f, idx: logic(single_bool(lfn(f, idx)), single_bool(rfn(f, idx))), _BOOL)
        category = _category(left.type)
        if category is None or category != _category(right.type):
            raise Unsupported("comparison of mixed or unknown types")
        if n.op in ("=", "!="):
            negate = n.op == "!="

            fixed = _fixed(n.right, right)

            def equal(f: Any, idx: int) -> list[Any]:
                lv, rv = lfn(f, idx), (fixed if fixed is not None else rfn(f, idx))
                if not lv or not rv:
                    return []
                if len(lv) == 1 and len(rv) == 1:
                    return [(lv[0] == rv[0]) != negate]
                same = len(lv) == len(rv) and all(a == b for a, b in zip(lv, rv, strict=False))
                return [same != negate]

            return Compiled(equal, _BOOL)
        if n.op in ORDER and category != "boolean":
            cmp = ORDER[n.op]

            def order(f: Any, idx: int) -> list[Any]:
                lv, rv = lfn(f, idx), rfn(f, idx)
                if not lv or not rv:
                    return []
                if len(lv) > 1 or len(rv) > 1:
                    raise EvaluationFailure("comparison of collections")
                return [cmp(lv[0], rv[0])]

            return Compiled(order, _BOOL)
        raise Unsupported(f"operator {n.op}")


def _fixed(node: Node, compiled: Compiled) -> list[Any] | None:
    """The value of a literal or constant operand, computed once."""
    return (
        compiled.fn(None, 0)
        if isinstance(node, Literal) or (isinstance(node, Var) and node.name != "rowIndex")
        else None
    )
