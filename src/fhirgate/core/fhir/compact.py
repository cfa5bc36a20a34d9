"""Model-friendly output shapes for FHIR resources: flattened compact JSON, one-line summaries, and
FHIR `_elements` / `_summary` subsetting for `format='fhir'` output.

Compact shapes (the one documented contract; datatypes are recognised by element name and shape):

- resource: `resourceType` and `id` kept as they are (not renamed to `type`: 60+ resource types have a `type`
  element of their own); `meta`, `text`, `contained`, `extension` and primitive
  extensions (`_birthDate`) dropped unless `elements` names them; element `id`s inside datatypes dropped;
  `modifierExtension` always kept, because a modifier changes the meaning of its element (FHIR R4 §2.6.1.1.3).
- CodeableConcept -> {"codes": ["system|code", ...], "text": CodeableConcept.text or the codings' displays
  joined with "; "}. A concept with only text is {"text": ...}.
- Coding -> {"code": "system|code", "display": ...}. A code without a system is written bare ("code"),
  a system without a code as "system|". Coding.version and userSelected are dropped.
- Reference -> {"ref": "Patient/123", "display": ...}; a logical reference gives {"identifier": "system|value"}.
- Quantity (and Age, Duration, Count, Distance) -> {"value": 7.2, "unit": "%", "comparator"?, "code"?}; "code"
  ("system|code") is omitted when the quantity is UCUM-coded with code == unit (unit then is the UCUM code).
- Identifier -> "system|value"; one with a type (MR, SS, DL...) -> {"value": "system|value", "type": <concept>}
  so no code is lost. Identifier.use, period and assigner are dropped.
- HumanName -> "Mr. Alvin Jerde" (prefix given family suffix, or .text), with " (maiden)" etc. for a use other
  than official/usual. Address -> one line "1 Main St, Boston, MA 02101, US". ContactPoint -> "phone: 555-1234
  (home)". Attachment -> {"contentType", "size", "title", "url", "creation"} with `data` removed (its text is
  reachable through fhirgate.text grep). Narrative (when asked) -> its XHTML div string.
- everything else (Period, Annotation, backbone elements) keeps its keys, with values compacted recursively.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from fhirgate.errors import InvalidInput

UCUM = "http://unitsofmeasure.org"
SUBSETTED_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
SUMMARY_MODES = ("true", "text", "data", "false")

# FHIR R4 §2.24.0.1 data types: the suffixes of choice elements (value[x]) and the keys to recognise types.
_DATATYPE_NAMES = (
    "Boolean Integer Decimal Base64Binary Instant String Uri Url Canonical Date DateTime Time Code Oid "
    "Uuid Id UnsignedInt PositiveInt Markdown Address Age Annotation Attachment CodeableConcept Coding "
    "ContactPoint Count Distance Duration HumanName Identifier Money Period Quantity Range Ratio "
    "Reference SampledData Signature Timing ContactDetail Contributor DataRequirement Expression "
    "ParameterDefinition RelatedArtifact TriggerDefinition UsageContext Dosage Meta"
)
_DATATYPES = frozenset(_DATATYPE_NAMES.split())
_SUFFIX_KINDS = {
    "CodeableConcept": "CodeableConcept",
    "Coding": "Coding",
    "Reference": "Reference",
    "Quantity": "Quantity",
    "Age": "Quantity",
    "Duration": "Quantity",
    "Count": "Quantity",
    "Distance": "Quantity",
    "Identifier": "Identifier",
    "HumanName": "HumanName",
    "Address": "Address",
    "ContactPoint": "ContactPoint",
    "Attachment": "Attachment",
}
_NAME_KINDS = {
    "name": "HumanName",
    "address": "Address",
    "telecom": "ContactPoint",
    "identifier": "Identifier",
    "attachment": "Attachment",
    "photo": "Attachment",
    "presentedForm": "Attachment",
    "coding": "Coding",
    "class": "Coding",
    "tag": "Coding",
    "security": "Coding",
    "note": "Annotation",
}
_KEYS = {
    "CodeableConcept": frozenset({"id", "extension", "coding", "text"}),
    "Coding": frozenset({"id", "extension", "system", "version", "code", "display", "userSelected"}),
    "Reference": frozenset({"id", "extension", "reference", "type", "identifier", "display"}),
    "Quantity": frozenset({"id", "extension", "value", "comparator", "unit", "system", "code"}),
    "Identifier": frozenset({"id", "extension", "use", "type", "system", "value", "period", "assigner"}),
    "HumanName": frozenset({"id", "extension", "use", "text", "family", "given", "prefix", "suffix", "period"}),
    "Address": frozenset(
        {"id", "extension", "use", "type", "text", "line", "city", "district", "state", "postalCode", "country"}
        | {"period"}
    ),
    "ContactPoint": frozenset({"id", "extension", "system", "value", "use", "rank", "period"}),
    "Attachment": frozenset(
        {"id", "extension", "contentType", "language", "data", "url", "size", "hash", "title", "creation"}
    ),
}
_CONTACT_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})
_DEFAULT_DROP = frozenset({"meta", "text", "contained", "extension"})
_ELEMENT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,63}(\[x\])?$")
_MAX_ELEMENTS = 64
_MAX_DEPTH = 64


def parse_elements(elements: Sequence[str] | None) -> frozenset[str] | None:
    """Validate a FHIR `_elements` list (top-level element names, `value[x]` allowed) and return it as a set."""
    if elements is None:
        return None
    if isinstance(elements, str | bytes) or not isinstance(elements, Sequence):
        raise InvalidInput("elements", "must be a list of element names", "e.g. ['code', 'value[x]']")
    if len(elements) > _MAX_ELEMENTS:
        raise InvalidInput("elements", f"too many names ({len(elements)})", f"at most {_MAX_ELEMENTS}")
    names: set[str] = set()
    for name in elements:
        if not isinstance(name, str) or not _ELEMENT_RE.match(name):
            raise InvalidInput("elements", "each entry must be a top-level element name", "letters and digits")
        names.add(name.removesuffix("[x]"))
    return frozenset(names)


def _selected(key: str, wanted: frozenset[str]) -> bool:
    """Whether a top-level key is named by `_elements`; a base name such as `value` selects `valueQuantity`."""
    if key in wanted:
        return True
    for cut in range(1, len(key)):
        if key[cut].isupper() and key[:cut] in wanted:
            return key[cut:] in _DATATYPES
    return False


def check_resource(resource: Any) -> Mapping[str, Any]:
    """The resource as a mapping; InvalidInput when it is not a FHIR resource object."""
    if not isinstance(resource, Mapping) or not isinstance(resource.get("resourceType"), str):
        raise InvalidInput("resource", "must be a FHIR resource object with a resourceType")
    return resource


def compact(resource: Mapping[str, Any], *, elements: Sequence[str] | None = None) -> dict[str, Any]:
    """Return the compact, model-friendly form of a resource (shapes in the module docstring)."""
    wanted = parse_elements(elements)
    keep_ext = wanted is not None and "extension" in wanted
    return _resource(check_resource(resource), wanted, keep_ext, 0)


def _resource(res: Mapping[str, Any], wanted: frozenset[str] | None, keep_ext: bool, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": res["resourceType"]}
    if "id" in res:
        out["id"] = res["id"]
    for key, value in res.items():
        if key in ("resourceType", "id"):
            continue
        if key.startswith("_"):
            if not keep_ext:
                continue
        elif wanted is None:
            if key in _DEFAULT_DROP:
                continue
        elif not _selected(key, wanted):
            continue
        if key == "text" and isinstance(value, Mapping):
            compacted: Any = value.get("div")
        else:
            compacted = _value(key, value, keep_ext, depth + 1)
        if compacted not in (None, "", [], {}):
            out[key] = compacted
    return out


def _value(key: str, value: Any, keep_ext: bool, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise InvalidInput("resource", "nested too deeply", f"at most {_MAX_DEPTH} levels")
    if isinstance(value, list):
        items = (_value(key, item, keep_ext, depth + 1) for item in value)
        return [item for item in items if item not in (None, "", [], {})]
    if not isinstance(value, Mapping):
        return value
    if isinstance(value.get("resourceType"), str):
        return _resource(value, None, keep_ext, depth + 1)
    if key in ("extension", "modifierExtension"):
        return _extension(value, keep_ext, depth)
    kind = _kind(key, value)
    if kind == "CodeableConcept":
        return _concept(value)
    if kind == "Coding":
        return _coding(value)
    if kind == "Reference":
        return _reference(value)
    if kind == "Quantity":
        return _quantity(value)
    if kind == "Identifier":
        token = _token(value.get("system"), value.get("value"))
        kind_of = value.get("type")
        if isinstance(kind_of, Mapping) and token:
            return {"value": token, "type": _concept(kind_of)}
        return token
    if kind == "HumanName":
        return human_name(value)
    if kind == "Address":
        return _address(value)
    if kind == "ContactPoint":
        return _contact(value)
    if kind == "Attachment":
        return _attachment(value)
    out: dict[str, Any] = {}
    for sub, item in value.items():
        if sub == "id" or (not keep_ext and (sub == "extension" or sub.startswith("_"))):
            continue
        compacted = _value(sub, item, keep_ext, depth + 1)
        if compacted not in (None, "", [], {}):
            out[sub] = compacted
    return out


def _kind(key: str, value: Mapping[str, Any]) -> str | None:
    """Recognise a datatype from the element name (or its choice suffix) and the object's keys."""
    hint = _NAME_KINDS.get(key)
    if hint is None:
        for cut in range(1, len(key)):
            if key[cut].isupper() and key[cut:] in _SUFFIX_KINDS:
                hint = _SUFFIX_KINDS[key[cut:]]
                break
    keys = value.keys()
    if hint is not None:
        return hint if hint in _KEYS and keys <= _KEYS[hint] and _fits(hint, value) else None
    for kind in ("Reference", "Quantity", "Coding", "CodeableConcept", "Attachment"):
        if keys <= _KEYS[kind] and _fits(kind, value):
            return kind
    return None


def _fits(kind: str, value: Mapping[str, Any]) -> bool:
    if kind == "CodeableConcept":
        return isinstance(value.get("coding"), list) or isinstance(value.get("text"), str)
    if kind == "Coding":
        return isinstance(value.get("code"), str) or isinstance(value.get("system"), str)
    if kind == "Reference":
        return isinstance(value.get("reference"), str) or isinstance(value.get("identifier"), Mapping)
    if kind == "Quantity":
        number = value.get("value")
        return (isinstance(number, int | float) and not isinstance(number, bool)) or "unit" in value
    if kind == "Identifier":
        return isinstance(value.get("value"), str)
    if kind == "ContactPoint":
        return value.get("system") in _CONTACT_SYSTEMS or ("value" in value and "system" not in value)
    if kind == "Attachment":
        return "contentType" in value or "data" in value or "url" in value
    return True


def _token(system: Any, code: Any) -> str | None:
    """The FHIR token form `system|code` (FHIR R4 §3.1.1.4.10); a bare code when there is no system."""
    if isinstance(code, bool | int | float):
        code = str(code)
    if isinstance(system, str) and system:
        return f"{system}|{code if isinstance(code, str) else ''}"
    return code if isinstance(code, str) and code else None


def _coding(value: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    token = _token(value.get("system"), value.get("code"))
    if token:
        out["code"] = token
    if isinstance(value.get("display"), str):
        out["display"] = value["display"]
    return out


def _concept(value: Mapping[str, Any]) -> dict[str, Any]:
    codes: list[str] = []
    displays: list[str] = []
    for coding in value.get("coding") or ():
        if not isinstance(coding, Mapping):
            continue
        token = _token(coding.get("system"), coding.get("code"))
        if token and token not in codes:
            codes.append(token)
        display = coding.get("display")
        if isinstance(display, str) and display and display not in displays:
            displays.append(display)
    out: dict[str, Any] = {}
    if codes:
        out["codes"] = codes
    text = value.get("text")
    if isinstance(text, str) and text:
        out["text"] = text
    elif displays:
        out["text"] = "; ".join(displays)
    return out


def concept_text(value: Any) -> str | None:
    """The human text of a CodeableConcept: its text, else its first coding display, else its first bare code."""
    if not isinstance(value, Mapping):
        return None
    if isinstance(value.get("text"), str) and value["text"]:
        return str(value["text"])
    codings = [c for c in value.get("coding") or () if isinstance(c, Mapping)]
    for coding in codings:
        if isinstance(coding.get("display"), str) and coding["display"]:
            return str(coding["display"])
    codes = [c.get("code") for c in codings]
    return next((str(c) for c in codes if isinstance(c, str) and c), None)


def _reference(value: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(value.get("reference"), str):
        out["ref"] = value["reference"]
    else:
        ident = value.get("identifier")
        if isinstance(ident, Mapping):
            out["identifier"] = _token(ident.get("system"), ident.get("value"))
        if isinstance(value.get("type"), str):
            out["type"] = value["type"]
    if isinstance(value.get("display"), str):
        out["display"] = value["display"]
    return out


def _quantity(value: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(value.get("comparator"), str):
        out["comparator"] = value["comparator"]
    if "value" in value:
        out["value"] = value["value"]
    unit, code, system = value.get("unit"), value.get("code"), value.get("system")
    if not unit and system == UCUM and isinstance(code, str):
        unit = code
    if isinstance(unit, str) and unit:
        out["unit"] = unit
    if isinstance(code, str) and code and not (system == UCUM and code == unit):
        out["code"] = _token(system, code)
    return out


def quantity_text(value: Any) -> str | None:
    """A quantity as "7.2 %" (with its comparator), for summaries."""
    if not isinstance(value, Mapping) or "value" not in value:
        return None
    compacted = _quantity(value)
    unit = compacted.get("unit") or ""
    return f"{compacted.get('comparator', '')}{compacted['value']} {unit}".strip()


def human_name(value: Mapping[str, Any]) -> str | None:
    """A HumanName as one string: its text, else prefix given family suffix; non-usual uses are appended."""
    text = value.get("text")
    if not isinstance(text, str) or not text:
        parts: list[str] = []
        for key in ("prefix", "given"):
            parts.extend(p for p in value.get(key) or () if isinstance(p, str))
        if isinstance(value.get("family"), str):
            parts.append(value["family"])
        parts.extend(p for p in value.get("suffix") or () if isinstance(p, str))
        text = " ".join(parts)
    if not text:
        return None
    use = value.get("use")
    return f"{text} ({use})" if isinstance(use, str) and use not in ("official", "usual") else text


def _address(value: Mapping[str, Any]) -> str | None:
    if isinstance(value.get("text"), str) and value["text"]:
        return str(value["text"])
    parts = [line for line in value.get("line") or () if isinstance(line, str)]
    parts += [value[k] for k in ("city", "district") if isinstance(value.get(k), str)]
    region = " ".join(value[k] for k in ("state", "postalCode") if isinstance(value.get(k), str))
    parts += [region] if region else []
    parts += [value["country"]] if isinstance(value.get("country"), str) else []
    return ", ".join(p for p in parts if p) or None


def _contact(value: Mapping[str, Any]) -> str | None:
    if not isinstance(value.get("value"), str):
        return None
    text = f"{value.get('system', 'contact')}: {value['value']}"
    return f"{text} ({value['use']})" if isinstance(value.get("use"), str) else text


def _attachment(value: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: value[k] for k in ("contentType", "language", "url", "size", "title", "creation") if k in value}
    data = value.get("data")
    if "size" not in out and isinstance(data, str):
        stripped = "".join(data.split())
        out["size"] = len(stripped) * 3 // 4 - len(stripped) + len(stripped.rstrip("="))
    return out


def _extension(value: Mapping[str, Any], keep_ext: bool, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {"url": value.get("url")}
    for key, item in value.items():
        if key == "extension":
            out["extension"] = _value("extension", item, keep_ext, depth + 1)
        elif key.startswith("value"):
            out["value"] = _value(key, item, keep_ext, depth + 1)
    return out


# ---- FHIR `_elements` / `_summary` subsetting for format='fhir' (FHIR R4 §3.1.1.5.8-9) -----------------

_TYPE_RE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")


@lru_cache(maxsize=256)
def _element_flags(resource_type: str) -> tuple[frozenset[str], frozenset[str]]:
    """(summary, mandatory) top-level elements of a type, read from the fhir.resources R4B definitions."""
    if not _TYPE_RE.match(resource_type):
        return frozenset(), frozenset()
    try:
        from fhir.resources.R4B import get_fhir_model_class

        model = get_fhir_model_class(resource_type)
    except Exception:  # an unknown type is a ValueError; anything else means "no definitions": keep the minimum
        return frozenset(), frozenset()
    summary: set[str] = set()
    mandatory: set[str] = set()
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if not extra.get("element_property"):
            continue
        key = field.alias or name
        if extra.get("summary_element_property"):
            summary.add(key)
        if field.is_required() or extra.get("element_required") or extra.get("one_of_many_required"):
            mandatory.add(key)
    return frozenset(summary), frozenset(mandatory)


def _subset(res: Mapping[str, Any], keep: frozenset[str], wanted: frozenset[str]) -> dict[str, Any]:
    """Copy the kept top-level elements (with their `_x` primitive extensions); tag SUBSETTED if any went."""
    out: dict[str, Any] = {}
    removed = False
    for key, value in res.items():
        base = key[1:] if key.startswith("_") else key
        if base in keep or _selected(base, wanted):
            out[key] = value
        else:
            removed = True
    if removed:
        # FHIR R4 §3.1.1.5.8: a subsetted resource SHOULD carry the SUBSETTED tag so it is never taken as whole.
        meta = copy.deepcopy(dict(res.get("meta") or {}))
        tags = [t for t in meta.get("tag") or () if isinstance(t, Mapping)]
        if not any(t.get("system") == SUBSETTED_SYSTEM and t.get("code") == "SUBSETTED" for t in tags):
            tags.append({"system": SUBSETTED_SYSTEM, "code": "SUBSETTED", "display": "subsetted"})
        meta["tag"] = tags
        out["meta"] = meta
        out = {"resourceType": out.pop("resourceType"), **({"id": out.pop("id")} if "id" in out else {}), **out}
    return out


def apply_elements(resource: Mapping[str, Any], elements: Sequence[str]) -> dict[str, Any]:
    """FHIR `_elements`: keep the named top-level elements plus id, meta and mandatory elements (§3.1.1.5.9)."""
    res = check_resource(resource)
    wanted = parse_elements(elements) or frozenset()
    _, mandatory = _element_flags(res["resourceType"])
    return _subset(res, frozenset({"resourceType", "id", "meta"}) | mandatory, wanted)


def summary_mode(resource: Mapping[str, Any], mode: str) -> dict[str, Any]:
    """FHIR `_summary` for one resource: true (summary elements), text, data (no narrative) or false (all)."""
    res = check_resource(resource)
    if mode not in SUMMARY_MODES:
        raise InvalidInput("summary", "unknown summary mode", ", ".join(SUMMARY_MODES))
    if mode == "false":
        return dict(res)
    base = frozenset({"resourceType", "id", "meta"})
    summary, mandatory = _element_flags(res["resourceType"])
    if mode == "true":
        keep = base | summary | mandatory
    elif mode == "text":
        keep = base | mandatory | {"text"}
    else:
        keep = frozenset(k.lstrip("_") for k in res if k.lstrip("_") != "text")
    return _subset(res, keep, frozenset())
