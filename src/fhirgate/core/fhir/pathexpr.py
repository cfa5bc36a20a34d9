"""A compiler from the FHIRPath subset used by R4 search expressions into fast closures over raw JSON.

Running fhirpathpy per resource costs ~0.5 ms per expression; the loader needs every index row of a
resource in tens of microseconds, so search expressions (FHIR R4 §3.1.1.4, SearchParameter.expression)
are compiled once into plain dict/list walks. Supported: dotted paths (arrays flatten), `|` unions,
parentheses, `.ofType(T)` / `as T` on choice elements (value[x] → valueQuantity), `.where(resolve() is T)`,
`.where(field = literal)` and other where-filters over this subset, `.exists()`, `.first()`,
`.extension('url')`, `and` / `or`, `=` / `!=`, and boolean literals. Anything else falls back to
fhirpathpy for that one expression (`CompiledPath.fallback` says so).

Compiled functions return read-only views: a result list may be the resource's own array.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fhirgate.core.fhir.fhirpath_ast import (
    Binary,
    Call,
    Ident,
    Literal,
    Member,
    Node,
    PathSyntaxError,
    TypeOp,
    split_union,
)
from fhirgate.core.fhir.fhirpath_ast import parse as parse_fhirpath


class UnsupportedExpression(ValueError):
    """The expression uses FHIRPath outside the subset this compiler turns into closures."""


_COMPILED_OPERATORS = frozenset({"|", "and", "or", "=", "!="})


def parse(expression: str) -> Node:
    """The AST of a search expression; UnsupportedExpression when it is not FHIRPath the parser reads."""
    try:
        return parse_fhirpath(expression)
    except PathSyntaxError as exc:
        raise UnsupportedExpression(str(exc)) from None


Evaluator = Callable[[dict[str, Any]], list[Any]]
_Coll = list[Any]
_Fn = Callable[[_Coll], _Coll]
_Pred = Callable[[Any], bool]

# Profiles of Quantity in the R4 data types (Age, Count, ...), so ofType(Quantity) keeps them too.
_SUBTYPES: dict[str, frozenset[str]] = {
    "Quantity": frozenset({"Quantity", "Age", "Count", "Distance", "Duration", "SimpleQuantity", "MoneyQuantity"}),
}
_ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_TYPE_RE = re.compile(r"[A-Z][A-Za-z]{1,63}")


@lru_cache(maxsize=65536)
def split_reference(reference: str) -> tuple[str | None, str | None]:
    """The (type, id) a reference string names: `Type/id`, `Type/id/_history/v` or an absolute URL ending so.

    Contained (`#x`), `urn:` and conditional (`Type?query`) references name no type or id
    (FHIR R4 §2.3.0.4 "Literal references").
    """
    if not reference or reference[0] == "#" or reference.startswith("urn:") or "?" in reference:
        return None, None
    cut = reference.find("/_history/")
    head, _, rid = (reference[:cut] if cut >= 0 else reference).rpartition("/")
    rtype = head.rpartition("/")[2]
    if _TYPE_RE.fullmatch(rtype) and _ID_RE.fullmatch(rid):
        return rtype, rid
    return None, None


@lru_cache(maxsize=65536)
def local_reference(reference: str) -> tuple[str, str] | None:
    """The (type, id) of a relative `Type/id[/_history/v]` reference; None for absolute or other forms.

    Compartment membership uses only these: an absolute URL may name another server's Patient/5.
    """
    if "://" in reference or reference.count("/") not in (1, 3):
        return None
    rtype, rid = split_reference(reference)
    return None if rtype is None or rid is None else (rtype, rid)


def _reference_type(value: Any) -> str | None:
    """The target type of a Reference dict (what `resolve() is T` tests without resolving)."""
    if type(value) is dict:
        ref = value.get("reference")
        if type(ref) is str:
            return split_reference(ref)[0]
    return None


@dataclass(frozen=True, slots=True)
class CompiledPath:
    """One compiled expression: `evaluate(resource)` → values, and the top-level keys it reads."""

    expression: str
    evaluate: Evaluator
    # Top-level JSON keys the result depends on; None when it must always run (e.g. `.exists()`).
    keys: frozenset[str] | None
    fallback: bool


@dataclass(slots=True)
class _Plan:
    """A fused path walk: steps of (JSON keys, optional filter), from the resource root or `$this`."""

    path: str
    steps: list[tuple[tuple[str, ...], _Pred | None]]
    choice: tuple[tuple[str, str], ...] | None = None  # (FHIR type, JSON key) of a choice last step


class _Compiler:
    """Compiles one AST against the choice-element table of one resource type."""

    def __init__(self, resource_type: str, choices: Mapping[str, Sequence[str]]) -> None:
        self.resource_type = resource_type
        self.choices = choices

    def plan(self, node: Node, this_path: str | None) -> _Plan | None:
        """A fused walk for node, or None when node is not a pure path from root / $this."""
        if isinstance(node, Ident):
            if this_path is None:
                if node.name in (self.resource_type, "Resource", "DomainResource"):
                    return _Plan(self.resource_type, [])
                raise UnsupportedExpression(f"root {node.name!r} is not {self.resource_type}")
            return self._member(_Plan(this_path, []), node.name)
        if isinstance(node, Member):
            base = self.plan(node.base, this_path)
            return None if base is None else self._member(base, node.name)
        if isinstance(node, TypeOp) and node.op == "as":
            base = self.plan(node.operand, this_path)
            return None if base is None else self._of_type(base, node.type_name)
        if isinstance(node, Call) and node.base is not None:
            base = self.plan(node.base, this_path)
            if base is None:
                return None
            if node.name == "ofType" and len(node.args) == 1 and isinstance(node.args[0], Ident):
                return self._of_type(base, node.args[0].name)
            if node.name == "where" and len(node.args) == 1 and base.steps:
                return self._filter(base, self.predicate(node.args[0], base.path))
            if node.name == "extension" and len(node.args) == 1 and isinstance(node.args[0], Literal):
                url = node.args[0].value
                plan = _Plan(base.path + ".extension", [*base.steps, (("extension",), None)])
                return self._filter(plan, lambda x: type(x) is dict and x.get("url") == url)
        return None

    def _member(self, base: _Plan, name: str) -> _Plan:
        path = f"{base.path}.{name}"
        types = self.choices.get(path)
        if types is None:
            return _Plan(path, [*base.steps, ((name,), None)])
        choice = tuple((t, name + t[0].upper() + t[1:]) for t in types)
        return _Plan(path, [*base.steps, (tuple(k for _, k in choice), None)], choice)

    def _of_type(self, base: _Plan, type_name: str) -> _Plan:
        if base.choice is None:
            raise UnsupportedExpression(f"ofType({type_name}) on non-choice element {base.path}")
        wanted = _SUBTYPES.get(type_name, frozenset({type_name}))
        keys = tuple(k for t, k in base.choice if t in wanted)
        steps = [*base.steps[:-1], (keys, base.steps[-1][1])]
        return _Plan(base.path, steps)

    @staticmethod
    def _filter(base: _Plan, pred: _Pred) -> _Plan:
        keys, old = base.steps[-1]
        combined = pred if old is None else (lambda x: old(x) and pred(x))
        return _Plan(base.path, [*base.steps[:-1], (keys, combined)], base.choice)

    def predicate(self, node: Node, this_path: str) -> _Pred:
        """A per-item filter for `where(node)`, with fast forms for the common search idioms."""
        if (
            isinstance(node, TypeOp)
            and node.op == "is"
            and isinstance(node.operand, Call)
            and node.operand.name == "resolve"
            and node.operand.base is None
            and not node.operand.args
        ):
            target = node.type_name
            return lambda x: _reference_type(x) == target
        if (
            isinstance(node, Binary)
            and node.op == "="
            and isinstance(node.left, Ident)
            and isinstance(node.right, Literal)
            and f"{this_path}.{node.left.name}" not in self.choices
        ):
            field, lit = node.left.name, node.right.value
            return lambda x: type(x) is dict and _same(_single(x.get(field)), lit)
        inner = self.collection(node, this_path)
        return lambda x: inner([x]) == [True]

    def collection(self, node: Node, this_path: str | None) -> _Fn:
        """A function from the input collection (root or `$this`) to the node's result collection."""
        plan = self.plan(node, this_path)
        if plan is not None:
            walk = _walker(plan.steps)
            return lambda coll: [v for item in coll for v in walk(item)]
        if isinstance(node, Literal):
            value = node.value
            return lambda _coll: [value]
        if isinstance(node, Call) and node.base is not None and not node.args:
            base = self.collection(node.base, this_path)
            if node.name == "exists":
                return lambda coll: [len(base(coll)) > 0]
            if node.name == "first":
                return lambda coll: base(coll)[:1]
        if isinstance(node, Binary):
            left = self.collection(node.left, this_path)
            right = self.collection(node.right, this_path)
            return _binary(node.op, left, right)
        raise UnsupportedExpression(f"cannot compile {node!r}")

    def term(self, node: Node) -> tuple[Evaluator, frozenset[str] | None]:
        """The evaluator of one top-level term and the top-level keys it reads."""
        plan = self.plan(node, None)
        if plan is not None:
            keys = frozenset(plan.steps[0][0]) if plan.steps else None
            return _walker(plan.steps), keys
        fn = self.collection(node, None)
        return (lambda resource: fn([resource])), None


def _single(value: Any) -> Any:
    """A one-item array as its item (FHIRPath collections), anything else as is."""
    return value[0] if type(value) is list and len(value) == 1 else value


def _same(a: Any, b: Any) -> bool:
    """FHIRPath `=` on two singletons: values of different kinds are unequal (True is not 1)."""
    return (type(a) is bool) == (type(b) is bool) and a == b


def _truth(coll: _Coll) -> bool | None:
    """Singleton evaluation of a collection as a Boolean (FHIRPath §4.5): empty is unknown."""
    if not coll:
        return None
    if len(coll) == 1:
        value = coll[0]
        return value if type(value) is bool else True
    raise UnsupportedExpression("boolean test on a collection of more than one item")


def _binary(op: str, left: _Fn, right: _Fn) -> _Fn:
    """`|`, `and`, `or`, `=`, `!=` with FHIRPath's empty-propagation and three-valued logic."""
    if op not in _COMPILED_OPERATORS:
        raise UnsupportedExpression(f"operator {op!r} is not in the compiled subset")
    if op == "|":
        return lambda coll: left(coll) + right(coll)
    if op in ("and", "or"):
        stop = op == "or"  # the value that short-circuits

        def logic(coll: _Coll) -> _Coll:
            a, b = _truth(left(coll)), _truth(right(coll))
            if a is stop or b is stop:
                return [stop]
            if a is None or b is None:
                return []
            return [not stop]

        return logic
    negate = op == "!="

    def equality(coll: _Coll) -> _Coll:
        a, b = left(coll), right(coll)
        if not a or not b:
            return []
        equal = len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
        return [equal != negate]

    return equality


def _walker(steps: list[tuple[tuple[str, ...], _Pred | None]]) -> Evaluator:
    """A closure walking `steps` from one dict; specialised for the common one- and two-step paths."""
    if not steps:
        return lambda node: [node]
    if len(steps) == 1 and len(steps[0][0]) == 1 and steps[0][1] is None:
        key = steps[0][0][0]

        def one(node: dict[str, Any]) -> list[Any]:
            value = node.get(key)
            if value is None:
                return []
            return value if type(value) is list else [value]

        return one
    if len(steps) == 1 and steps[0][1] is None:
        keys = steps[0][0]

        def choice(node: dict[str, Any]) -> list[Any]:
            found: list[Any] = []
            for key in keys:
                value = node.get(key)
                if value is not None:
                    if type(value) is list:
                        found.extend(value)
                    else:
                        found.append(value)
            return found

        return choice
    if len(steps) == 2 and len(steps[0][0]) == 1 and len(steps[1][0]) == 1 and steps[0][1] is steps[1][1] is None:
        first, second = steps[0][0][0], steps[1][0][0]

        def two(node: dict[str, Any]) -> list[Any]:
            value = node.get(first)
            if value is None:
                return []
            if type(value) is dict:
                inner = value.get(second)
                if inner is None:
                    return []
                return inner if type(inner) is list else [inner]
            found: list[Any] = []
            if type(value) is list:
                for item in value:
                    if type(item) is dict:
                        inner = item.get(second)
                        if inner is None:
                            continue
                        if type(inner) is list:
                            found.extend(inner)
                        else:
                            found.append(inner)
            return found

        return two
    frozen = tuple(steps)

    def walk(node: dict[str, Any]) -> list[Any]:
        current: list[Any] = [node]
        for keys, pred in frozen:
            found: list[Any] = []
            for item in current:
                if type(item) is not dict:
                    continue
                for key in keys:
                    value = item.get(key)
                    if value is None:
                        continue
                    if type(value) is list:
                        found.extend(value)
                    else:
                        found.append(value)
            if pred is not None:
                found = [v for v in found if pred(v)]
            if not found:
                return found
            current = found
        return current

    return walk


def _fallback(expression: str) -> Evaluator:
    """fhirpathpy for one expression, with `resolve()` answering the reference's type only."""
    import fhirpathpy  # only loaded when some expression needs it
    from fhirpathpy.engine.nodes import ResourceNode
    from fhirpathpy.models import models

    def resolve(inputs: list[Any]) -> list[Any]:
        out = []
        for item in inputs:
            rtype = _reference_type(item)
            if rtype is not None:
                out.append(ResourceNode.create_node({"resourceType": rtype}, rtype))  # type: ignore[no-untyped-call]
        return out

    options = {"userInvocationTable": {"resolve": {"fn": resolve, "arity": {0: []}}}}
    compiled = fhirpathpy.compile(expression, models["r4"], options)

    def run(resource: dict[str, Any]) -> list[Any]:
        return list(compiled(resource, {}))

    return run


def compile_terms(expression: str, resource_type: str, choices: Mapping[str, Sequence[str]]) -> list[CompiledPath]:
    """One CompiledPath per top-level `|` term, so callers can skip terms whose keys are absent.

    `choices` maps element paths such as "Observation.value" to their FHIR types ("Quantity", ...).
    """
    compiler = _Compiler(resource_type, choices)
    out: list[CompiledPath] = []
    for term in split_union(expression):
        try:
            fn, keys = compiler.term(parse(term))
            out.append(CompiledPath(term, fn, keys, fallback=False))
        except UnsupportedExpression:
            out.append(CompiledPath(term, _fallback(term), None, fallback=True))
    return out


def compile_expression(expression: str, resource_type: str, choices: Mapping[str, Sequence[str]]) -> CompiledPath:
    """The whole expression as one evaluator (the concatenation of its terms' results)."""
    terms = compile_terms(expression, resource_type, choices)
    if len(terms) == 1:
        return terms[0]
    fns = tuple(t.evaluate for t in terms)
    keys: frozenset[str] | None = frozenset()
    for t in terms:
        keys = None if keys is None or t.keys is None else keys | t.keys

    def union(resource: dict[str, Any]) -> list[Any]:
        return [v for fn in fns for v in fn(resource)]

    return CompiledPath(expression, union, keys, fallback=any(t.fallback for t in terms))
