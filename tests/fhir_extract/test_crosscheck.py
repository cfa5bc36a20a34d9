"""Proof the compiler is right: compiled raw values equal fhirpathpy's for every param on real and synthetic data.

fhirpathpy does not implement resolve(); `resolver` below answers it with a stub resource of the
reference's type, written independently of the compiler's own reference parser. Values are compared
as sets of canonical JSON: FHIRPath unions deduplicate while the compiler leaves that to extract().
"""

from __future__ import annotations

import copy
import decimal
import json
import random
from collections.abc import Iterator
from typing import Any

import fhirpathpy
import pytest
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

from fhirgate.core.fhir import definitions as d
from fhirgate.core.fhir.fhirpath_ast import Binary, Call, Ident, Member, Node, TypeOp, split_union
from fhirgate.core.fhir.pathexpr import compile_expression, parse


def _resolve(inputs: list[Any]) -> list[Any]:
    out = []
    for item in inputs:
        ref = item.get("reference") if isinstance(item, dict) else None
        if not isinstance(ref, str) or ref.startswith(("urn:", "#")) or "?" in ref:
            continue
        parts = ref.split("/")
        if len(parts) >= 4 and parts[-2] == "_history":
            parts = parts[:-2]
        if len(parts) >= 2 and parts[-2][:1].isupper():
            out.append(ResourceNode.create_node({"resourceType": parts[-2]}, parts[-2]))  # type: ignore[no-untyped-call]
    return out


OPTIONS = {"userInvocationTable": {"resolve": {"fn": _resolve, "arity": {0: []}}}}


def _plain(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _canon(values: list[Any]) -> set[str]:
    return {json.dumps(_plain(v), sort_keys=True) for v in values if v is not None}


class Checker:
    """Compiles each (type, param) both ways once and compares results per resource."""

    def __init__(self) -> None:
        self.cache: dict[tuple[str, str], tuple[Any, Any]] = {}
        self.compared = 0
        self.nonempty: set[tuple[str, str]] = set()

    def mismatches(self, resource: dict[str, Any]) -> list[str]:
        rtype = resource["resourceType"]
        out = []
        for code, p in d.search_params(rtype).items():
            key = (rtype, code)
            if key not in self.cache:
                ours = compile_expression(p.expression, rtype, d.choice_elements(rtype))
                theirs = fhirpathpy.compile(p.expression, models["r4"], OPTIONS)
                self.cache[key] = (ours, theirs)
            ours, theirs = self.cache[key]
            mine = _canon(ours.evaluate(resource))
            ref = _canon(theirs(copy.deepcopy(resource), {}))
            self.compared += 1
            if ref:
                self.nonempty.add(key)
            if mine != ref:
                out.append(
                    f"{rtype}.{code} id={resource.get('id')}: compiled {sorted(mine)} != fhirpathpy {sorted(ref)}"
                )
        return out


def _sample(synthea: dict[str, list[dict[str, Any]]], per_type: int) -> list[dict[str, Any]]:
    by_type: dict[str, list[dict[str, Any]]] = {}
    for resources in synthea.values():
        for r in resources:
            if d.is_supported(r["resourceType"]):
                by_type.setdefault(r["resourceType"], []).append(r)
    rng = random.Random(20240501)
    out = []
    for resources in by_type.values():
        out.extend(resources if len(resources) <= per_type else rng.sample(resources, per_type))
    return out


@pytest.mark.shared
def test_synthea_sample_matches_fhirpathpy(synthea: dict[str, list[dict[str, Any]]]) -> None:
    checker = Checker()
    problems = [m for r in _sample(synthea, 25) for m in checker.mismatches(r)]
    assert problems == []
    assert checker.compared > 5000
    assert len(checker.nonempty) > 200  # the sample actually exercises most populated params


@pytest.mark.shared
@pytest.mark.slow
def test_all_synthea_matches_fhirpathpy(synthea: dict[str, list[dict[str, Any]]]) -> None:
    checker = Checker()
    problems = [
        m for rs in synthea.values() for r in rs if d.is_supported(r["resourceType"]) for m in checker.mismatches(r)
    ]
    assert problems == []


# -- synthetic resources: every term of every expression populated, so all 27 types are covered ----------

_LEAF = [
    {
        "system": "phone",
        "code": "c1",
        "display": "D1",
        "text": "T1",
        "reference": "Patient/1",
        "value": 1.5,
        "unit": "mg",
        "start": "2020-01-01",
        "family": "F",
        "given": ["G"],
        "coding": [{"system": "s", "code": "c"}],
    },
    {"system": "email", "reference": "Group/2", "value": "v2", "end": "2021", "city": "C", "url": "u"},
    {"reference": "https://x.org/fhir/Practitioner/3/_history/1", "display": "third"},
    {"reference": "Location/4"},
    {"reference": "urn:uuid:5"},
]
_PRIMITIVE = {"dateTime": "2020-05-06T07:08:09Z", "string": "s", "boolean": True, "integer": 3, "time": "10:00:00"}


def _chain(node: Node) -> list[tuple[str, str | None]] | None:
    """The (member, ofType) steps of a pure member chain, or None."""
    if isinstance(node, Ident):
        return []
    if isinstance(node, Member):
        base = _chain(node.base)
        return None if base is None else [*base, (node.name, None)]
    if isinstance(node, Call) and node.base is not None:
        base = _chain(node.base)
        if base and node.name == "ofType" and isinstance(node.args[0], Ident):
            return [*base[:-1], (base[-1][0], node.args[0].name)]
        return base
    if isinstance(node, TypeOp) and node.op == "as":
        base = _chain(node.operand)
        return [*base[:-1], (base[-1][0], node.type_name)] if base else None
    return None


def _chains(node: Node) -> list[list[tuple[str, str | None]]]:
    """Every member chain in an expression (both sides of `and`, `=`, ...)."""
    if isinstance(node, Binary):
        return _chains(node.left) + _chains(node.right)
    found = _chain(node)
    return [found] if found else []


def _populate(steps: list[tuple[str, str | None]], resource: dict[str, Any], choices: Any, variant: int) -> None:
    """Fill `resource` along one chain: two items per level, a few leaf shapes at the end.

    A choice element gets one type (FHIR allows one value[x]): the ofType one, else the variant-th.
    """
    path = resource["resourceType"]
    level: list[dict[str, Any]] = [resource]
    for i, (name, of_type) in enumerate(steps):
        path = f"{path}.{name}"
        key, ftype = name, None
        if path in choices:
            ftype = of_type or choices[path][variant % len(choices[path])]
            key = name + ftype[0].upper() + ftype[1:]
        nxt: list[dict[str, Any]] = []
        for parent in level:
            if ftype in _PRIMITIVE:
                parent.setdefault(key, _PRIMITIVE[ftype])
            elif i == len(steps) - 1:
                parent.setdefault(key, copy.deepcopy(_LEAF))
            else:
                children = parent.setdefault(key, [{}, {}])
                nxt.extend(c for c in (children if isinstance(children, list) else [children]) if isinstance(c, dict))
        level = nxt


def _synthetic(rtype: str) -> Iterator[dict[str, Any]]:
    """One resource per (param, term, chain, choice variant)."""
    choices = d.choice_elements(rtype)
    for p in d.search_params(rtype).values():
        for term in split_union(p.expression):
            for steps in _chains(parse(term)):
                paths = [".".join([rtype, *(n for n, _ in steps[: i + 1])]) for i in range(len(steps))]
                variants = max([len(choices[x]) for x in paths if x in choices] or [1])
                for variant in range(variants):
                    resource: dict[str, Any] = {"resourceType": rtype, "id": "syn"}
                    _populate(steps, resource, choices, variant)
                    yield resource


@pytest.mark.parametrize("rtype", d.SUPPORTED_TYPES)
def test_synthetic_resources_match_fhirpathpy(rtype: str) -> None:
    checker = Checker()
    problems = [m for r in _synthetic(rtype) for m in checker.mismatches(r)]
    assert problems == []
    populated = {code for (t, code) in checker.nonempty if t == rtype}
    assert populated == set(d.search_params(rtype))  # every param really produced values
