"""Generated straight-line column functions for single-valued member paths (the hot path of materialization).

A compiled path like `code.coding.first().code` or `subject.getReferenceKey(Patient)` has a *walk*: member keys,
`first()` markers and value transforms. Most resources hold one value at each step, so the generated function
follows single values without building collections; the moment a step holds several values that the path does
not immediately narrow with first(), it hands the focus to the generic collection closure, so results are the
same as the generic path by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Walk = tuple[tuple[Any, ...], ...]
ColumnFn = Callable[[Any, int, Any], Any]
ValuesFn = Callable[[Any, int], list[Any]]
RowFn = Callable[[Any, int, Any], tuple[Any, ...]]


def _walk_lines(walk: Walk, namespace: dict[str, Any], tag: str, missing: str, many: str, pad: str) -> list[str]:
    """Lines following `v` from the focus `f`; `missing` / `many` are the statements for no / several values."""
    lines = [f"{pad}v = f"]
    for i, op in enumerate(walk):
        kind = op[0]
        if kind == "key":
            narrowed = i + 1 < len(walk) and walk[i + 1][0] == "first"
            several = "v = next((x for x in v if x is not None), None)" if narrowed else many
            lines += [
                f"{pad}if v.__class__ is not dict:",
                f"{pad}    {missing}",
                f"{pad}v = v.get({op[1]!r})",
                f"{pad}if v is None:",
                f"{pad}    {missing}",
                f"{pad}if v.__class__ is list:",
                f"{pad}    if len(v) == 1:",
                f"{pad}        v = v[0]",
                f"{pad}    elif not v:",
                f"{pad}        {missing}",
                f"{pad}    else:",
                f"{pad}        {several}",
                f"{pad}    if v is None:",
                f"{pad}        {missing}",
            ]
        elif kind == "call":
            namespace[f"call{tag}_{i}"] = op[1]
            lines += [f"{pad}v = call{tag}_{i}(v)", f"{pad}if v is None:", f"{pad}    {missing}"]
        elif kind != "first":
            raise ValueError(f"unknown walk step {kind}")
    return lines


def _build(lines: list[str], namespace: dict[str, Any]) -> Any:
    exec(compile("\n".join(lines), "<sof-walk>", "exec"), namespace)  # noqa: S102 - built from repr() of keys only
    return namespace["fn"]


def scalar_values(walk: Walk, generic: ValuesFn) -> ValuesFn:
    """The collection function for `walk`, fast when each step holds one value; several defer to `generic`."""
    namespace: dict[str, Any] = {"generic": generic}
    body = _walk_lines(walk, namespace, "", "return []", "return generic(f, idx)", "    ")
    values: ValuesFn = _build(["def fn(f, idx):", *body, "    return [v]"], namespace)
    return values


def row_function(columns: list[tuple[Walk | None, ColumnFn]]) -> RowFn:
    """One generated function building a row tuple: walks inlined, other columns called.

    Each walk runs inside `while True: ... break` so "no value" can leave it early without a function call.
    """
    namespace: dict[str, Any] = {}
    lines = ["def fn(f, idx, root):"]
    for i, (walk, column) in enumerate(columns):
        namespace[f"col{i}"] = column
        if walk is None:
            lines.append(f"    c{i} = col{i}(f, idx, root)")
            continue
        body = _walk_lines(walk, namespace, str(i), "v = None; break", f"v = col{i}(f, idx, root); break", "        ")
        lines += ["    while True:", *body, "        break", f"    c{i} = v"]
    cells = "".join(f"c{i}, " for i in range(len(columns)))
    lines.append(f"    return ({cells})")
    row: RowFn = _build(lines, namespace)
    return row
