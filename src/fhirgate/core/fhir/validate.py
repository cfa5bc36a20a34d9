"""Validation of FHIR R4 resources at the ingest boundary, in two modes: `full` and `fast`.

`full` runs the fhir.resources R4B pydantic models (structure, cardinality, primitive formats) and then
the checks the models omit: REQUIRED code bindings (FHIR R4 §4.1.1 "required": the code SHALL be from
the value set) from the generated definitions/bindings.json, and reference syntax (FHIR R4 §2.3.0
Reference.reference: relative `Type/id`, absolute URL, `urn:uuid:`/`urn:oid:`, or `#local`).
`fast` skips pydantic (≈3k resources/s) and checks the top-level structure (known elements, JSON kinds,
cardinality, min=1 elements), required bindings and reference syntax, at tens of thousands per second.

Errors carry the element path as `location`; they echo a value only for coded elements (the offending
code), never free text, names or identifiers (no PHI in messages).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from functools import cache
from importlib import resources as importlib_resources
from typing import Any, Literal

from fhirgate.errors import ValidationFailed

ValidationMode = Literal["full", "fast"]
MODES: tuple[ValidationMode, ...] = ("full", "fast")

# FHIR R4 §2.24.0.1 id: [A-Za-z0-9\-\.]{1,64}
ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_REL_RE = re.compile(r"([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?")
_ABS_RE = re.compile(r"(?:https?)://[^\s/]+(?:/[^\s/]+)*/([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/\S+)?")
_URN_RE = re.compile(
    r"urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|urn:oid:[0-2](?:\.(?:0|[1-9]\d*))+"
)
_LOCAL_RE = re.compile(r"#[A-Za-z0-9\-.]{0,64}")
_COND_RE = re.compile(r"([A-Z][A-Za-z]+)\?\S+")

# Elements whose data types (Coding, Meta) hold no Reference anywhere: reference walks skip them.
NO_REFERENCES = frozenset({"coding", "meta"})

_KIND_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "bool": (bool,),
    "number": (int, float),
    "object": (dict,),
}


@cache
def _definitions() -> dict[str, Any]:
    """The generated bindings.json (tools/gen_bindings.py), loaded once."""
    text = importlib_resources.files("fhirgate.core.fhir").joinpath("definitions/bindings.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@cache
def supported_types() -> frozenset[str]:
    """The resource types fhirgate stores and indexes."""
    return frozenset(_definitions()["types"])


def r4_resource_types() -> frozenset[str]:
    """Every FHIR R4 resource type name, served or not (to tell a typo from a type fhirgate does not serve)."""
    return _all_types()


def element_names(resource_type: str) -> frozenset[str] | None:
    """Top-level JSON element names of a supported type, choice elements in their concrete forms (valueQuantity).

    None for a type fhirgate does not serve. Choice elements: FHIR R4 formats.html#choice (`value[x]`).
    """
    spec = _definitions()["structure"].get(resource_type)
    if spec is None:
        return None
    concrete = (prefix + suffix for prefix, options in spec["choices"].items() for suffix in options)
    return frozenset(spec["fields"]).union(concrete)


def choice_forms(resource_type: str) -> dict[str, frozenset[str]] | None:
    """Each choice element of a supported type by base name, with its concrete JSON names.

    For example `value` -> {valueQuantity, valueString, ...} (FHIR R4 formats.html#choice); None for a
    type fhirgate does not serve. A fresh dict each call, so callers may keep or change it.
    """
    spec = _definitions()["structure"].get(resource_type)
    if spec is None:
        return None
    return {base: frozenset(base + suffix for suffix in options) for base, options in spec["choices"].items()}


@cache
def _all_types() -> frozenset[str]:
    return frozenset(_definitions()["all_types"])


@cache
def _bindings(resource_type: str) -> tuple[tuple[tuple[str, ...], str, frozenset[str]], ...]:
    """(path segments, value set url, allowed codes) for each required-bound code element of a type."""
    defs = _definitions()
    valuesets = defs["valuesets"]
    return tuple(
        (tuple(path.split(".")), vs, frozenset(valuesets[vs]))
        for path, vs in defs["elements"].get(resource_type, {}).items()
    )


def _fail_unsupported(resource_type: object) -> ValidationFailed:
    allowed = ", ".join(sorted(supported_types()))
    shown = resource_type if isinstance(resource_type, str) and _is_type_name(resource_type) else "(invalid)"
    return ValidationFailed(
        f"unsupported resourceType {shown}; allowed: {allowed}",
        location="resourceType",
    )


def _is_type_name(text: str) -> bool:
    return len(text) <= 64 and text.isascii() and text.isalpha()


def check_resource_type(resource: object) -> str:
    """The resourceType of a supported resource; raises ValidationFailed otherwise."""
    if not isinstance(resource, dict):
        raise ValidationFailed("a resource must be a JSON object", location="resource")
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        raise ValidationFailed("resourceType is missing or not a string", location="resourceType")
    if rtype not in supported_types():
        raise _fail_unsupported(rtype)
    return rtype


def check_reference(ref: str, *, allow_conditional: bool = False) -> str | None:
    """Why a Reference.reference string is malformed, or None when its syntax is valid."""
    if _LOCAL_RE.fullmatch(ref) or _URN_RE.fullmatch(ref):
        return None
    m = _REL_RE.fullmatch(ref) or _ABS_RE.fullmatch(ref)
    if m:
        return None if m.group(1) in _all_types() else "reference names an unknown resource type"
    if allow_conditional and (m := _COND_RE.fullmatch(ref)):
        return None if m.group(1) in _all_types() else "conditional reference names an unknown resource type"
    return "reference must be Type/id, an absolute URL, urn:uuid:, urn:oid: or #local"


def collect_references(node: Any, out: list[str] | None = None) -> list[str]:
    """Every Reference.reference string anywhere in a resource (contained resources included)."""
    found = [] if out is None else out
    stack = [node]
    pop, push = stack.pop, stack.append
    while stack:
        cur = pop()
        if type(cur) is dict:
            for key, value in cur.items():
                tv = type(value)
                if tv is str:
                    if key == "reference":
                        found.append(value)
                elif (tv is dict or tv is list) and key not in NO_REFERENCES:
                    push(value)
        elif type(cur) is list:
            for value in cur:
                tv = type(value)
                if tv is dict or tv is list:
                    push(value)
    return found


@cache
def _required(rtype: str) -> tuple[str, ...]:
    """Top-level elements with min=1 for a type."""
    fields: dict[str, list[Any]] = _definitions()["structure"][rtype]["fields"]
    return tuple(name for name, (minimum, _, _) in fields.items() if minimum)


# (type, JSON key) -> (is_array, kind), or None for an unknown element; filled lazily (keys repeat).
_ELEMENTS: dict[tuple[str, str], tuple[bool, str] | None] = {}


def _element(rtype: str, name: str) -> tuple[bool, str] | None:
    """Whether a top-level element (primitive-extension underscore removed) is an array, and its JSON kind."""
    key = (rtype, name)
    if key in _ELEMENTS:
        return _ELEMENTS[key]
    spec = _definitions()["structure"][rtype]
    fdef = spec["fields"].get(name)
    found: tuple[bool, str] | None = None
    if fdef is not None:
        found = (bool(fdef[1]), str(fdef[2]))
    else:
        for prefix, options in spec["choices"].items():
            if name.startswith(prefix) and name[len(prefix) :] in options:
                found = (False, str(options[name[len(prefix) :]]))
                break
    if len(_ELEMENTS) < 100_000:
        _ELEMENTS[key] = found
    return found


def _check_structure(resource: dict[str, Any], rtype: str) -> None:
    """Top-level elements: known names, JSON kind, array or not, and min=1 elements present."""
    for key, value in resource.items():
        name = key[1:] if key.startswith("_") and len(key) > 1 else key
        element = _element(rtype, name)
        if element is None:
            raise ValidationFailed("unknown element", location=f"{rtype}.{key}")
        is_array, kind = element
        if name != key:  # primitive extension (FHIR R4 §2.6.2.7 JSON "_element")
            if not isinstance(value, (dict, list)):
                raise ValidationFailed("primitive extension must be an object", location=f"{rtype}.{key}")
            continue
        if value is None or value == [] or value == {}:
            raise ValidationFailed("empty values are not allowed (FHIR R4 §2.6.2)", location=f"{rtype}.{key}")
        items: Iterable[Any]
        if is_array:
            if not isinstance(value, list):
                raise ValidationFailed("must be an array", location=f"{rtype}.{key}")
            items = value
        else:
            if isinstance(value, list):
                raise ValidationFailed("must not be an array", location=f"{rtype}.{key}")
            items = (value,)
        ok_types = _KIND_TYPES[kind]
        for item in items:
            if not isinstance(item, ok_types) or (kind == "number" and isinstance(item, bool)):
                raise ValidationFailed(f"must be a JSON {kind}", location=f"{rtype}.{key}")
    for name in _required(rtype):
        if name not in resource:
            raise ValidationFailed("required element is missing", location=f"{rtype}.{name}")
    rid = resource.get("id")
    if rid is not None and not ID_RE.fullmatch(rid):
        raise ValidationFailed("id must match [A-Za-z0-9-.]{1,64}", location=f"{rtype}.id")


def _check_bindings(resource: dict[str, Any], rtype: str) -> None:
    """REQUIRED bindings on code elements (values outside the value set are rejected)."""
    for segments, vs, allowed in _bindings(rtype):
        first = resource.get(segments[0])
        if first is None:
            continue
        # Walk the path through objects and arrays, keeping the concrete location for messages.
        level: list[tuple[Any, str]] = [(first, f"{rtype}.{segments[0]}")]
        for seg in segments[1:]:
            nxt: list[tuple[Any, str]] = []
            for value, loc in level:
                if isinstance(value, list):
                    nxt.extend(
                        (v[seg], f"{loc}[{i}].{seg}") for i, v in enumerate(value) if isinstance(v, dict) and seg in v
                    )
                elif isinstance(value, dict) and seg in value:
                    nxt.append((value[seg], f"{loc}.{seg}"))
            if not nxt:
                break
            level = nxt
        else:
            for value, loc in level:
                codes = value if isinstance(value, list) else (value,)
                for i, code in enumerate(codes):
                    where = f"{loc}[{i}]" if isinstance(value, list) else loc
                    if not isinstance(code, str):
                        raise ValidationFailed("code must be a string", location=where)
                    if code not in allowed:
                        shown = code[:40]
                        raise ValidationFailed(f"code {shown!r} is not in the required value set {vs}", location=where)


# Syntactically valid references seen before (loads repeat the same Patient/Encounter/Practitioner
# references thousands of times); bounded, cleared when full. Only valid ones are kept.
_VALID_REFS: dict[str, None] = {}
_VALID_REFS_MAX = 65536


def _check_references(refs: Sequence[str], rtype: str, allow_conditional: bool) -> None:
    known = _VALID_REFS
    for ref in refs:
        if ref in known:
            continue
        problem = check_reference(ref, allow_conditional=allow_conditional)
        if problem:
            raise ValidationFailed(problem, location=f"{rtype}.reference")
        if not allow_conditional or not _COND_RE.fullmatch(ref):
            if len(known) >= _VALID_REFS_MAX:
                known.clear()
            known[ref] = None


def _format_loc(loc: Sequence[str | int]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)


def check_model(resource: dict[str, Any], rtype: str) -> None:
    """The fhir.resources R4B model alone; pydantic errors become ValidationFailed without input values.

    Split out so a loader can run this slow part (≈3k resources/s) in worker processes.
    """
    from fhir.resources.R4B import get_fhir_model_class
    from pydantic import ValidationError

    model = get_fhir_model_class(rtype)
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        err = exc.errors(include_url=False, include_input=False, include_context=False)[0]
        msg = str(err.get("msg", "invalid value"))
        # Messages come from fhir.resources validators; strip any echo of the value to keep PHI out.
        raise ValidationFailed(msg.split(":", 1)[0][:200], location=rtype + _format_loc(err["loc"])) from None
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(f"invalid resource ({type(exc).__name__})", location=rtype) from None


def validate_resource(
    resource: dict[str, Any],
    *,
    mode: ValidationMode = "full",
    references: Sequence[str] | None = None,
    allow_conditional: bool = False,
) -> None:
    """Raise ValidationFailed(location=element path) unless the resource is valid in the given mode.

    `references`, when the caller already walked the resource (bundle rewriting does), saves a walk.
    `allow_conditional` accepts `Type?search` references, legal only inside a transaction bundle.
    """
    if mode not in MODES:
        raise ValidationFailed(f"unknown validation mode {mode!r}; allowed: full, fast", location="mode")
    rtype = check_resource_type(resource)
    _check_structure(resource, rtype)
    _check_bindings(resource, rtype)
    refs = references if references is not None else collect_references(resource)
    _check_references(refs, rtype, allow_conditional)
    if mode == "full":
        check_model(resource, rtype)
