"""Fixtures for extraction tests: the Synthea sample with references resolved as the loader would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


def _resolve_references(node: Any, urls: dict[str, str], idents: dict[str, str]) -> Any:
    """Rewrite `urn:uuid:` and conditional `Type?identifier=s|v` references to `Type/id`, in place."""
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str):
            if ref in urls:
                node["reference"] = urls[ref]
            elif "?identifier=" in ref:
                rtype, _, ident = ref.partition("?identifier=")
                target = idents.get(f"{rtype}|{ident}")
                if target is not None:
                    node["reference"] = target
        for value in node.values():
            _resolve_references(value, urls, idents)
    elif isinstance(node, list):
        for value in node:
            _resolve_references(value, urls, idents)
    return node


def load_synthea(synthea_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Resources per bundle file name, with references rewritten to relative `Type/id` form."""
    bundles = {p.name: json.loads(p.read_text()) for p in sorted(synthea_dir.glob("*.json"))}
    urls: dict[str, str] = {}
    idents: dict[str, str] = {}
    for bundle in bundles.values():
        for entry in bundle["entry"]:
            res = entry["resource"]
            ref = f"{res['resourceType']}/{res['id']}"
            urls[entry["fullUrl"]] = ref
            for ident in res.get("identifier", []):
                if "system" in ident and "value" in ident:
                    idents[f"{res['resourceType']}|{ident['system']}|{ident['value']}"] = ref
    return {
        name: [_resolve_references(e["resource"], urls, idents) for e in bundle["entry"]]
        for name, bundle in bundles.items()
    }


@pytest.fixture(scope="session")
def synthea(synthea_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """The Synthea sample: bundle file name -> resources (references resolved)."""
    return load_synthea(synthea_dir)
