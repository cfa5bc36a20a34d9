"""Rows from resources: the SQL on FHIR v2 processing algorithm over a plan of compiled or fallback expressions.

Per select (spec "Processing Algorithm"): the foci are the focus itself, the forEach / forEachOrNull items, or the
depth-first `repeat` traversal; for each focus the row is the select's columns × each nested select's rows × the
concatenated unionAll rows. forEachOrNull with no items still yields one row, evaluated on an empty focus.
%rowIndex is the 0-based position within the nearest enclosing iteration (0 at the resource).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fhirgate.analytics.sof import fhirpath
from fhirgate.analytics.sof.compile import Compiler, Unsupported, Walk
from fhirgate.analytics.sof.errors import ViewEvaluationError
from fhirgate.analytics.sof.scalar import ColumnFn, row_function
from fhirgate.analytics.sof.viewdef import Column, Select, ViewDefinition

Row = tuple[Any, ...]
RowsFn = Callable[[dict[str, Any]], list[Row]]


class _Context:
    """What every expression of one view shares: the compiler (None = fallback only) and the constants."""

    def __init__(self, view: ViewDefinition, force_fallback: bool) -> None:
        self.compiler = None if force_fallback else Compiler({c.name: c for c in view.constants})
        self.constants = view.constant_values
        self.compiled = 0
        self.fallback = 0
        self.scalar = not force_fallback

    def expr(self, expression: str, focus_type: str | None, location: str, *, fast: bool = True) -> _Expr:
        """Bind one expression: compiled when allowed and possible, else fhirpathpy."""
        if fast and self.compiler is not None:
            try:
                compiled = self.compiler.compile(expression, focus_type)
            except Unsupported:
                pass
            else:
                self.compiled += 1
                return _Expr(location, focus_type, self.constants, compiled.fn, compiled.type, walk=compiled.walk)
        self.fallback += 1
        return _Expr(location, focus_type, self.constants, None, None, fhirpath.FallbackExpression(expression))


class _Expr:
    """One bound expression: a compiled closure, or fhirpathpy; `location` names it in errors."""

    __slots__ = ("fast", "focus_type", "location", "out_type", "slow", "vars", "walk")

    def __init__(
        self,
        location: str,
        focus_type: str | None,
        constants: dict[str, Any],
        fast: Callable[[Any, int], list[Any]] | None,
        out_type: str | None,
        slow: fhirpath.FallbackExpression | None = None,
        walk: Walk | None = None,
    ) -> None:
        self.walk = walk
        self.location = location
        self.focus_type = focus_type
        self.vars = constants
        self.fast = fast
        self.out_type = out_type
        self.slow = slow

    def nodes(self, focus: Any, idx: int, root: Any) -> list[Any]:
        """The result, items still typed (ResourceNode) when fhirpathpy produced them."""
        if self.fast is not None:
            return self.fast(focus, idx)
        assert self.slow is not None
        typed_root = fhirpath.typed(root, None)
        variables = {**self.vars, "rowIndex": idx, "resource": typed_root, "rootResource": typed_root}
        node = [] if focus is None else fhirpath.typed(focus, self.focus_type)
        return self.slow.evaluate(node, variables)

    def values(self, focus: Any, idx: int, root: Any) -> list[Any]:
        """The result as plain JSON values."""
        if self.fast is not None:
            return self.fast(focus, idx)
        return fhirpath.plain(self.nodes(focus, idx, root))


class _SelectPlan:
    """A select structure bound to expressions; `rows` implements the processing algorithm for one focus."""

    def __init__(self, ctx: _Context, sel: Select, focus_type: str | None) -> None:
        self.location = sel.location
        self.width = len(sel.all_columns)
        self.mode = "or_null" if sel.for_each_or_null else "each" if sel.for_each else "repeat" if sel.repeat else ""
        self.iterate: list[_Expr] = []
        self.iterate_inner: list[_Expr] = []
        inner = focus_type
        if self.mode:
            key = {"each": "forEach", "or_null": "forEachOrNull", "repeat": "repeat"}[self.mode]
            loc = f"{sel.location}.{key}"
            paths = list(sel.repeat) if self.mode == "repeat" else [sel.for_each or sel.for_each_or_null or ""]
            self.iterate = [ctx.expr(p, focus_type, loc) for p in paths]
            inner = self.iterate[0].out_type
            if any(e.fast is None or e.out_type != inner for e in self.iterate):
                inner = None
            if self.mode == "repeat" and inner is not None:
                # Deeper levels start from the items' type: it must be a fixed point of every repeat path.
                self.iterate_inner = [ctx.expr(p, inner, loc) for p in paths]
                if any(e.fast is None or e.out_type != inner for e in self.iterate_inner):
                    inner = None
            if inner is None:  # items must keep their types: iterate with fhirpathpy
                self.iterate = [ctx.expr(p, focus_type, loc, fast=False) for p in paths]
                self.iterate_inner = []
            self.iterate_inner = self.iterate_inner or self.iterate
        columns = [_column(ctx, col, inner) for col in sel.columns]
        self.columns = [fn for _, fn in columns]
        self.children = [_SelectPlan(ctx, s, inner) for s in sel.selects]
        self.branches = [_SelectPlan(ctx, s, inner) for s in sel.union_all]
        self.simple = not self.mode and not self.children and not self.branches
        self.row = row_function(columns)

    def foci(self, focus: Any, idx: int, root: Any) -> list[tuple[Any, int]]:
        if not self.mode:
            return [(focus, idx)]
        if self.mode == "repeat":
            out: list[Any] = []
            self._repeat(focus, idx, root, out, 0)
            return [(item, i) for i, item in enumerate(out)]
        items = self.iterate[0].nodes(focus, idx, root) if focus is not None else []
        if not items and self.mode == "or_null":
            return [(None, 0)]
        return list(zip(items, range(len(items)), strict=True))

    def _repeat(self, focus: Any, idx: int, root: Any, out: list[Any], depth: int) -> None:
        if focus is None or depth > 64:
            return
        for expr in self.iterate if depth == 0 else self.iterate_inner:
            for item in expr.nodes(focus, idx, root):
                out.append(item)
                self._repeat(item, idx, root, out, depth + 1)

    def rows(self, focus: Any, idx: int, root: Any) -> list[Row]:
        if self.simple:
            return [self.row(focus, idx, root)]
        out: list[Row] = []
        for item, i in self.foci(focus, idx, root):
            combos: list[Row] = [self.row(item, i, root)]
            for child in self.children:
                child_rows = child.rows(item, i, root)
                combos = [a + b for a in combos for b in child_rows]
                if not combos:
                    break
            if combos and self.branches:
                branch_rows = [r for b in self.branches for r in b.rows(item, i, root)]
                combos = [a + b for a in combos for b in branch_rows]
            out.extend(combos)
        return out


def _column(ctx: _Context, col: Column, focus_type: str | None) -> tuple[Walk | None, ColumnFn]:
    """(walk to inline or None, closure) computing one column value; more than one value without `collection`
    is an error (spec: Column.collection)."""
    expr = ctx.expr(col.path, focus_type, f"{col.location}.path")
    name = col.name
    if col.collection:
        return None, lambda focus, idx, root: list(expr.values(focus, idx, root))
    fast = expr.fast

    def one(focus: Any, idx: int, root: Any) -> Any:
        values = fast(focus, idx) if fast is not None else expr.values(focus, idx, root)
        if not values:
            return None
        if len(values) == 1:
            return values[0]
        raise ViewEvaluationError(
            f"{col.location}.path", f"column {name!r} has {len(values)} values; set collection: true to keep them"
        )

    return (expr.walk if ctx.scalar else None), one


class ViewPlan:
    """A view bound to expressions; call it with one resource to get its rows as tuples in column order."""

    def __init__(self, view: ViewDefinition, *, force_fallback: bool = False) -> None:
        self.view = view
        ctx = _Context(view, force_fallback)
        self.where = [ctx.expr(p, view.resource, f"where[{i}].path") for i, p in enumerate(view.where)]
        self.selects = [_SelectPlan(ctx, s, view.resource) for s in view.select]
        self.compiled_count = ctx.compiled
        self.fallback_count = ctx.fallback
        only = self.selects[0] if len(self.selects) == 1 else None
        self.single_row = only.row if only is not None and only.simple else None

    def __call__(self, resource: dict[str, Any]) -> list[Row]:
        if not isinstance(resource, dict) or resource.get("resourceType") != self.view.resource:
            return []
        try:
            return self._rows(resource)
        except ViewEvaluationError as exc:
            raise ViewEvaluationError(exc.location, exc.problem, _ref(resource)) from None
        except Exception as exc:
            raise ViewEvaluationError("$", f"evaluation failed ({type(exc).__name__})", _ref(resource)) from exc

    def _rows(self, resource: dict[str, Any]) -> list[Row]:
        for expr in self.where:
            result = expr.values(resource, 0, resource)
            if not result or (len(result) == 1 and result[0] is False):
                return []
            if len(result) != 1 or result[0] is not True:
                raise ViewEvaluationError(expr.location, "where path must return a single boolean")
        if self.single_row is not None:
            return [self.single_row(resource, 0, resource)]
        combos: list[Row] | None = None
        for sel in self.selects:
            sel_rows = sel.rows(resource, 0, resource)
            combos = sel_rows if combos is None else [a + b for a in combos for b in sel_rows]
            if not combos:
                return []
        return combos or []


def _ref(resource: dict[str, Any]) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id')}"


def compile_view(view: ViewDefinition, *, force_fallback: bool = False) -> RowsFn:
    """A function from ONE resource to its rows (tuples in `view.columns` order); other types give no rows."""
    return ViewPlan(view, force_fallback=force_fallback)


def run_view(
    view: ViewDefinition, resources: Iterable[dict[str, Any]], *, force_fallback: bool = False
) -> Iterator[dict[str, Any]]:
    """Rows as dicts (keys in column order) for every resource of the view's type."""
    rows_of = compile_view(view, force_fallback=force_fallback)
    names = view.column_names
    for resource in resources:
        for row in rows_of(resource):
            yield dict(zip(names, row, strict=True))
