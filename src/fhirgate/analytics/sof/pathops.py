"""FHIRPath collection operations the compiled closures share: member steps, fused paths, three-valued logic."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Fn = Callable[[Any, int], list[Any]]
Steps = tuple[tuple[str, ...], ...]


class EvaluationFailure(ValueError):
    """A compiled expression hit a FHIRPath runtime error (e.g. comparing collections)."""


def step(items: list[Any], keys: tuple[str, ...]) -> list[Any]:
    """One member step over a collection: arrays flatten, absent and null values vanish."""
    out: list[Any] = []
    for item in items:
        if item.__class__ is dict:
            for key in keys:
                value = item.get(key)
                if value is None:
                    continue
                if value.__class__ is list:
                    if None in value:
                        out.extend(v for v in value if v is not None)
                    else:
                        out.extend(value)
                else:
                    out.append(value)
    return out


def path_fn(steps: Steps) -> Fn:
    """A fused closure for a member path from the focus; the one-step case is inlined."""
    if len(steps) == 1 and len(steps[0]) == 1:
        key = steps[0][0]

        def one(focus: Any, idx: int) -> list[Any]:
            if focus.__class__ is not dict:
                return []
            value = focus.get(key)
            if value is None:
                return []
            if value.__class__ is list:
                return [v for v in value if v is not None] if None in value else value[:]
            return [value]

        return one

    def many(focus: Any, idx: int) -> list[Any]:
        items = [focus]
        for keys in steps:
            items = step(items, keys)
            if not items:
                break
        return items

    return many


def single_bool(values: list[Any]) -> bool | None:
    if not values:
        return None
    if len(values) > 1:
        raise EvaluationFailure("boolean operand has more than one item")
    return bool(values[0])


def _and(a: bool | None, b: bool | None) -> list[Any]:
    if a is False or b is False:
        return [False]
    return [True] if a is True and b is True else []


def _or(a: bool | None, b: bool | None) -> list[Any]:
    if a is True or b is True:
        return [True]
    return [False] if a is False and b is False else []


def _xor(a: bool | None, b: bool | None) -> list[Any]:
    return [] if a is None or b is None else [a != b]


def _implies(a: bool | None, b: bool | None) -> list[Any]:
    if a is False or b is True:
        return [True]
    return [False] if a is True and b is False else []


LOGIC: dict[str, Callable[[bool | None, bool | None], list[Any]]] = {
    "and": _and,
    "or": _or,
    "xor": _xor,
    "implies": _implies,
}
ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: bool(a < b),
    ">": lambda a, b: bool(a > b),
    "<=": lambda a, b: bool(a <= b),
    ">=": lambda a, b: bool(a >= b),
}
