"""Finding and reading load inputs: JSON files (a Bundle or one resource), NDJSON files, and folders of them.

Folders are walked recursively in sorted order, with Synthea's hospitalInformation* and
practitionerInformation* files first, because patient bundles refer to their Organizations,
Locations and Practitioners through conditional references that must resolve at load time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from fhirgate.errors import InvalidInput, ValidationFailed

JSON_SUFFIXES = (".json",)
NDJSON_SUFFIXES = (".ndjson", ".jsonl")
# Synthea writes these shared-entity bundles beside the patient bundles; they must load first.
FIRST_PREFIXES = ("hospitalInformation", "practitionerInformation")


@dataclass(frozen=True, slots=True)
class NdjsonLine:
    """One line of an NDJSON file: its 1-based number and the parsed resource (or the parse error)."""

    line: int
    resource: Any
    error: ValidationFailed | None = None


def _order_key(path: Path) -> tuple[int, str]:
    first = path.name.startswith(FIRST_PREFIXES)
    return (0 if first else 1, str(path))


def is_ndjson(path: Path) -> bool:
    """True for .ndjson/.jsonl files (one resource per line, FHIR Bulk Data format)."""
    return path.suffix.lower() in NDJSON_SUFFIXES


def discover(paths: Sequence[Path]) -> list[Path]:
    """The files to load, in load order: given files as given, folders expanded recursively and sorted."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = [
                p
                for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in JSON_SUFFIXES + NDJSON_SUFFIXES and not p.name.startswith(".")
            ]
            out.extend(sorted(found, key=_order_key))
        elif path.is_file():
            out.append(path)
        else:
            raise InvalidInput("paths", f"{path} is neither a file nor a folder", "FHIR JSON/NDJSON files or folders")
    # Shared-entity files first across all inputs too, keeping the order otherwise.
    firsts = [p for p in out if p.name.startswith(FIRST_PREFIXES)]
    return firsts + [p for p in out if not p.name.startswith(FIRST_PREFIXES)]


def parse_json(data: bytes) -> Any:
    """Parse one JSON document; empty, truncated or malformed input raises ValidationFailed (no content echoed)."""
    if not data.strip():
        raise ValidationFailed("file is empty", location="file")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        # orjson messages carry only positions and expectations, not the document's text.
        detail = str(exc).split(":", 1)[0]
        raise ValidationFailed(
            f"not valid JSON ({detail} at line {exc.lineno}, column {exc.colno})", location="file"
        ) from None


def iter_ndjson(data: bytes) -> Iterator[NdjsonLine]:
    """The non-blank lines of an NDJSON document, each parsed independently."""
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            yield NdjsonLine(number, orjson.loads(raw))
        except orjson.JSONDecodeError as exc:
            detail = str(exc).split(":", 1)[0]
            yield NdjsonLine(number, None, ValidationFailed(f"not valid JSON ({detail})", location=f"line {number}"))


def read_bytes(path: Path) -> bytes:
    """The file's bytes; an unreadable file raises ValidationFailed naming only the OS reason."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValidationFailed(f"cannot read file ({exc.strerror})", location="file") from None
