"""HIPAA Safe Harbor de-identification (45 CFR 164.514(b)(2)) of FHIR R4 resources and tabular rows.

Type-driven: every element is looked up in the fhir.resources R4B definitions and handled by its FHIR type,
so a rule for a type (HumanName, Address, Identifier, date, string...) applies wherever that type occurs.
What survives is an allow-list: codes, Codings (system/code/display), CodeableConcept.text beside a coded
coding, quantities, numbers, booleans, times, statuses, meta.profile/security/tag, extension URLs, and
Address state/country/ZIP3. Elements unknown to R4B, free text, URLs and identifiers are removed; dates
become the year; resource ids and references become keyed pseudonyms. See docs/deidentification.md.
"""

from __future__ import annotations

import datetime as dt
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson

from fhirgate.core.policy import scrub
from fhirgate.core.policy.pseudonym import CONTAINED, Pseudonymizer
from fhirgate.core.policy.suppression import deidentify_rows
from fhirgate.errors import InvalidInput

AGE_EXTENSION_URL = "http://fhirgate.dev/fhir/StructureDefinition/deidentified-age"
GEOLOCATION_URL = "http://hl7.org/fhir/StructureDefinition/geolocation"
# FHIR R4 v3-ObservationValue "PSEUDED": the data was pseudonymized (added to meta.security when label=True).
PSEUDED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "PSEUDED",
           "display": "pseudonymized"}  # fmt: skip
MAX_DEPTH = 48

_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}")
_PRIMITIVE_NAMES = {"encodedBytes": "base64Binary", "uuidVersion": "uuid"}
_NUMBERS = frozenset({"integer", "positiveInt", "unsignedInt", "decimal", "integer64"})
_URIS = frozenset({"uri", "url", "canonical", "oid", "uuid"})
_UNIT_OWNERS = frozenset({"Quantity", "SimpleQuantity", "Duration", "Distance", "Count", "Age"})
_STRING_KINDS = {
    "name": "A", "alias": "A", "subscriberId": "I", "dependent": "I", "serialNumber": "M", "lotNumber": "M",
    "distinctIdentifier": "M", "deviceIdentifier": "M", "carrierHRF": "M", "modelNumber": "M", "partNumber": "M",
}  # fmt: skip
_REMOVED_TYPES = {"HumanName": "A", "Narrative": "R", "Annotation": "R", "Signature": "R", "xhtml": "R",
                  "base64Binary": "R", "instant": "C", "id": "R"}  # fmt: skip
_TIME = re.compile(r"[0-2]\d:[0-5]\d:[0-6]\d(?:\.\d{1,9})?")


def _type_name(annotation: Any) -> tuple[str, bool]:
    """(FHIR type name, is a list) of one fhir.resources field annotation."""
    is_list = False
    while True:
        origin = typing.get_origin(annotation)
        if origin in (typing.Union, types.UnionType):
            annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
        elif origin is list:
            is_list, annotation = True, typing.get_args(annotation)[0]
        else:
            break
    if typing.get_origin(annotation) is typing.Annotated:
        raw = type(annotation.__metadata__[0]).__name__
        return _PRIMITIVE_NAMES.get(raw, raw[:1].lower() + raw[1:]), is_list
    if annotation is bool:
        return "boolean", is_list
    name = getattr(annotation, "__name__", "")
    return (name[:-4] if name.endswith("Type") else name), is_list


@lru_cache(maxsize=1024)
def element_types(model: str) -> Mapping[str, tuple[str, bool]] | None:
    """JSON element name -> (FHIR type, is list) for an R4B resource, datatype or backbone; None if unknown."""
    if not _TYPE.fullmatch(model):
        return None
    try:
        from fhir.resources.R4B import get_fhir_model_class

        cls = get_fhir_model_class(model)
        table: dict[str, tuple[str, bool]] = {}
        for name, spec in cls.model_fields.items():
            extra = spec.json_schema_extra if isinstance(spec.json_schema_extra, dict) else {}
            if extra.get("element_property") or name in ("id", "extension"):
                table[spec.alias or name] = _type_name(spec.annotation)
        return types.MappingProxyType(table)
    except Exception:  # unknown type name (KeyError/ValueError) or a definitions problem: fail closed
        return None


@dataclass(slots=True)
class DeidReport:
    """What de-identification changed, by element path (no values): removed, generalized, pseudonymized.

    Paths are dotted FHIR element paths without indexes (`Patient.contact.name`); kinds are the Safe
    Harbor letters A-R of 164.514(b)(2)(i) (free text and unrecognized elements are reported as R).
    """

    removed: dict[str, set[str]] = field(default_factory=dict)
    generalized: dict[str, set[str]] = field(default_factory=dict)
    pseudonymized: set[str] = field(default_factory=set)

    @property
    def kinds(self) -> frozenset[str]:
        """Every Safe Harbor letter that was removed or generalized."""
        return frozenset(k for group in (self.removed, self.generalized) for ks in group.values() for k in ks)

    @property
    def paths(self) -> frozenset[str]:
        """Element paths that were removed."""
        return frozenset(self.removed)

    def remove(self, path: str, kind: str) -> None:
        self.removed.setdefault(path, set()).add(kind)

    def generalize(self, path: str, kind: str) -> None:
        self.generalized.setdefault(path, set()).add(kind)

    def merge(self, other: DeidReport) -> DeidReport:
        """A new report holding both reports' entries (neither input is changed)."""
        out = DeidReport({p: set(k) for p, k in self.removed.items()}, {p: set(k) for p, k in self.generalized.items()},
                         set(self.pseudonymized))  # fmt: skip
        for path, kinds in other.removed.items():
            out.removed.setdefault(path, set()).update(kinds)
        for path, kinds in other.generalized.items():
            out.generalized.setdefault(path, set()).update(kinds)
        out.pseudonymized |= other.pseudonymized
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for tool results: sorted kinds, paths and letters."""
        return {
            "method": "HIPAA Safe Harbor, 45 CFR 164.514(b)(2)",
            "kinds": sorted(self.kinds),
            "removed": {p: sorted(k) for p, k in sorted(self.removed.items())},
            "generalized": {p: sorted(k) for p, k in sorted(self.generalized.items())},
            "pseudonymized": sorted(self.pseudonymized),
        }


class _Walk:
    """One resource's de-identification pass: holds the report and the names to scrub from kept displays."""

    def __init__(self, harbor: SafeHarbor, report: DeidReport, names: frozenset[str]) -> None:
        self.pseudo, self.today, self.report, self.names = harbor.pseudo, harbor.today, report, names
        self.owner = ""  # the top resource type, for identifier kinds

    def resource(self, res: Mapping[str, Any], path: str, depth: int, contained: bool = False) -> dict[str, Any] | None:
        rtype = res.get("resourceType")
        if not isinstance(rtype, str) or not _TYPE.fullmatch(rtype):
            self.report.remove(path or "$", "R")
            return None
        path = path or rtype
        self.owner = self.owner or rtype
        table = element_types(rtype)
        out: dict[str, Any] = {"resourceType": rtype}
        rid = res.get("id")
        if isinstance(rid, str) and rid and len(rid) <= 256:
            out["id"] = self.pseudo.pid(CONTAINED if contained else rtype, rid)
            self.report.pseudonymized.add(f"{path}.id")
        age_flag = False
        for key, value in res.items():
            if key in ("resourceType", "id"):
                continue
            sub = f"{path}.{key}"
            spec = table.get(key) if table is not None else None
            if spec is None:
                self.report.remove(sub, "R")
            elif key == "birthDate":
                year = scrub.year_of(value)
                if year is None or scrub.over_89(value, self.today):
                    self.report.remove(sub, "C")
                    age_flag = year is not None
                else:
                    self.report.generalize(sub, "C")
                    out[key] = year
            elif key == "photo" or (key == "position" and rtype == "Location"):
                self.report.remove(sub, "Q" if key == "photo" else "B")
            else:
                new = self.element(rtype, key, spec, value, sub, depth + 1)
                if new is not None:
                    out[key] = new
        if age_flag:
            out.setdefault("extension", []).append({"url": AGE_EXTENSION_URL, "valueString": scrub.AGE_SENTINEL})
            self.report.generalize(f"{path}.birthDate", "C")
        return out

    def element(self, owner: str, key: str, spec: tuple[str, bool], value: Any, path: str, depth: int) -> Any:
        typ, is_list = spec
        if depth > MAX_DEPTH:
            self.report.remove(path, "R")
            return None
        if not is_list:
            if isinstance(value, list):
                self.report.remove(path, "R")
                return None
            return self.value(owner, key, typ, value, path, depth)
        items = value if isinstance(value, list) else [value]
        kept = [v for v in (self.value(owner, key, typ, item, path, depth) for item in items) if v is not None]
        return kept or None

    def value(self, owner: str, key: str, typ: str, value: Any, path: str, depth: int) -> Any:
        report = self.report
        if typ in _REMOVED_TYPES:
            report.remove(path, _REMOVED_TYPES[typ])
            return None
        if typ == "boolean":
            return value if isinstance(value, bool) else self._drop(path, "R")
        if typ in _NUMBERS:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            return value if ok else self._drop(path, "R")
        if typ in ("date", "dateTime"):
            year = scrub.year_of(value)
            if year is None:
                return self._drop(path, "C")
            report.generalize(path, "C")
            return year
        if typ == "time":
            return value if isinstance(value, str) and _TIME.fullmatch(value) else self._drop(path, "R")
        if typ == "code":
            if not isinstance(value, str) or len(value) > 256:
                return self._drop(path, "R")
            found = scrub.scrub_text(value, long_numbers=False)[1]
            return value if not found else self._drop(path, sorted(found)[0])
        if typ in ("string", "markdown"):
            if (owner == "Coding" and key == "display") or (owner in _UNIT_OWNERS and key == "unit"):
                return self._text(value, path, "R", self.names)
            return self._drop(path, _STRING_KINDS.get(key, "I" if owner == "CoverageClass" else "R"))
        if typ in _URIS:
            keep = key == "system" or (owner == "Extension" and key == "url") or (owner == "Meta" and key == "profile")
            return value if keep and isinstance(value, str) else self._drop(path, "N")
        if not isinstance(value, Mapping):
            return self._drop(path, "R")
        if typ == "ContactPoint":
            return self._drop(path, scrub.contact_kind(value))
        if typ == "Identifier":
            return self._drop(path, scrub.identifier_kind(value, self.owner))
        if typ == "Resource":
            return self.resource(value, path, depth, contained=key == "contained")
        handler = _HANDLERS.get(typ)
        if handler is not None:
            return handler(self, value, path, depth)
        return self.complex(typ, value, path, depth)

    def complex(self, typ: str, value: Mapping[str, Any], path: str, depth: int) -> dict[str, Any] | None:
        table = element_types(typ)
        if table is None:
            self._drop(path, "R")
            return None
        out: dict[str, Any] = {}
        for key, item in value.items():
            spec = table.get(key)
            if spec is None:
                self.report.remove(f"{path}.{key}", "R")
                continue
            new = self.element(typ, key, spec, item, f"{path}.{key}", depth + 1)
            if new is not None:
                out[key] = new
        return out or None

    def _drop(self, path: str, kind: str) -> Any:
        """Record a removal; returns None so callers can `return self._drop(...)`."""
        self.report.remove(path, kind)
        return None

    def _text(self, value: Any, path: str, kind: str, names: frozenset[str]) -> str | None:
        if not isinstance(value, str) or not value.strip() or len(value) > 1024:
            self._drop(path, kind)
            return None
        text, found = scrub.scrub_text(value, names)
        for letter in found:
            self.report.generalize(path, letter)
        return text

    def address(self, value: Mapping[str, Any], path: str, depth: int) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in ("use", "type", "state", "country") and isinstance(item, str):
                text, found = scrub.scrub_text(item)
                if found:
                    self.report.remove(f"{path}.{key}", "B")
                else:
                    out[key] = text
            elif key == "postalCode" and (short := scrub.zip3(item, value.get("country"))) is not None:
                self.report.generalize(f"{path}.{key}", "B")
                out[key] = short
            else:
                self.report.remove(f"{path}.{key}", "B")
        return out or None

    def attachment(self, value: Mapping[str, Any], path: str, depth: int) -> dict[str, Any] | None:
        ctype = value.get("contentType")
        if not isinstance(ctype, str) or ctype.split("/")[0].strip().lower() in ("image", "video"):
            self._drop(path, "Q")
            return None
        out = {k: value[k] for k in ("contentType", "language") if isinstance(value.get(k), str)}
        if isinstance(value.get("size"), int) and not isinstance(value.get("size"), bool):
            out["size"] = value["size"]
        if (year := scrub.year_of(value.get("creation"))) is not None:
            out["creation"] = year
            self.report.generalize(f"{path}.creation", "C")
        for key in value:
            if key not in out:
                self.report.remove(f"{path}.{key}", "N" if key == "url" else "R")
        return out

    def reference(self, value: Mapping[str, Any], path: str, depth: int) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        for key, item in value.items():
            sub = f"{path}.{key}"
            if key == "reference" and isinstance(item, str) and (ref := self.pseudo.ref(item)) is not None:
                out[key] = ref
                self.report.pseudonymized.add(sub)
            elif key == "type" and isinstance(item, str) and _TYPE.fullmatch(item):
                out[key] = item
            elif key == "identifier":
                self.report.remove(sub, scrub.identifier_kind(item, self.owner))
            elif key == "extension":
                if (ext := self.element("Reference", key, ("Extension", True), item, sub, depth + 1)) is not None:
                    out[key] = ext
            else:
                self.report.remove(sub, "A" if key == "display" else "N" if key == "reference" else "R")
        return out or None

    def codeable(self, value: Mapping[str, Any], path: str, depth: int) -> dict[str, Any] | None:
        out = self.complex("CodeableConcept", {k: v for k, v in value.items() if k != "text"}, path, depth) or {}
        if "text" in value:
            coded = any(isinstance(c, Mapping) and isinstance(c.get("code"), str) for c in out.get("coding") or ())
            text = self._text(value["text"], f"{path}.text", "R", self.names) if coded else None
            if text is None:
                self.report.remove(f"{path}.text", "R")
            else:
                out["text"] = text
        return out or None

    def age(self, value: Mapping[str, Any], path: str, depth: int) -> dict[str, Any] | None:
        capped, changed = scrub.cap_age(value)
        if changed:
            self.report.generalize(path, "C")
        return self.complex("Age", capped, path, depth)

    def extension(self, value: Mapping[str, Any], path: str, depth: int) -> dict[str, Any] | None:
        url = value.get("url")
        if not isinstance(url, str) or url == GEOLOCATION_URL:
            self._drop(path, "B" if url == GEOLOCATION_URL else "R")
            return None
        out = self.complex("Extension", value, path, depth)
        return out if out is not None and len(out) > 1 else None


_HANDLERS: dict[str, typing.Callable[[_Walk, Mapping[str, Any], str, int], dict[str, Any] | None]] = {
    "Address": _Walk.address,
    "Attachment": _Walk.attachment,
    "Reference": _Walk.reference,
    "CodeableConcept": _Walk.codeable,
    "Age": _Walk.age,
    "Extension": _Walk.extension,
}


class SafeHarbor:
    """Safe Harbor de-identification for one principal: resources via `resource`, tables via `rows`.

    `today` anchors the over-89 age rule; `label` adds the v3 PSEUDED security label to every output resource.
    """

    def __init__(self, pseudo: Pseudonymizer, *, today: dt.date, label: bool = True) -> None:
        if not isinstance(pseudo, Pseudonymizer):
            raise InvalidInput("pseudo", "must be a Pseudonymizer")
        if isinstance(today, dt.datetime) or not isinstance(today, dt.date):
            raise InvalidInput("today", "must be a datetime.date", "a date such as 2025-06-30")
        self.pseudo, self.today, self.label = pseudo, today, label

    def resource(self, res: Mapping[str, Any]) -> tuple[dict[str, Any], DeidReport]:
        """A de-identified deep copy of one FHIR R4 resource and a report of what changed.

        Never raises for malformed content: anything unreadable is dropped. A mapping without a valid
        `resourceType` gives `{}`. Raises InvalidInput only when `res` is not a mapping.
        """
        if not isinstance(res, Mapping):
            raise InvalidInput("resource", "must be a JSON object", "a FHIR resource as a dict")
        report = DeidReport()
        names: set[str] = set()
        try:  # fast path: most resources hold no HumanName at all
            raw = orjson.dumps(res)
            has_names = b'"family"' in raw or b'"given"' in raw
        except (TypeError, ValueError):  # not plain JSON (e.g. another Mapping type): walk it
            has_names = True
        if has_names:
            scrub.names_in(res, names)
        walk = _Walk(self, report, scrub.name_tokens(names))
        try:
            out = walk.resource(res, "", 0) or {}
        except Exception:  # fail closed: a bug must never let the raw resource through
            rtype = res.get("resourceType")
            out = {"resourceType": rtype} if isinstance(rtype, str) and _TYPE.fullmatch(rtype) else {}
            report.remove(out.get("resourceType", "$"), "R")
        if out and self.label:
            meta = out.pop("meta", None) or {}
            security = meta.setdefault("security", [])
            if not any(isinstance(s, Mapping) and s.get("code") == PSEUDED["code"] for s in security):
                security.append(dict(PSEUDED))
            head: dict[str, Any] = {k: out.pop(k) for k in ("resourceType", "id") if k in out}
            out = {**head, "meta": meta, **out}
        return out, report

    def rows(self, rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str]) -> list[dict[str, Any]]:
        """De-identified copies of tabular rows (reports, SQL results, fact rows); see `rows_with_report`."""
        return self.rows_with_report(rows, columns)[0]

    def rows_with_report(
        self, rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str]
    ) -> tuple[list[dict[str, Any]], DeidReport]:
        """De-identified copies of rows, each cell handled by its column's type, and the report.

        `columns` maps column name -> type: `id:<ResourceType>` (pseudonym; bare `id` uses the type
        "Resource"), `reference`, `date`/`dateTime`/`instant` (year), `birthDate` (year, or "90+"), `age`
        (number, or "90+"), `zip` (ZIP3), `count` (small-cell suppressed), `code`/`display`/`uri:system`/
        `state`/`country`/`time` (kept, pattern-scrubbed), numbers and `boolean` (kept), `string`/`markdown`/
        `uri` (removed). Removed cells become None; a column missing from `columns` is removed. Report paths
        are `rows.<column>`. Raises InvalidInput for an unknown column type or non-mapping arguments.
        """
        out, removed, generalized, pseudonymized = deidentify_rows(rows, columns, self.pseudo, self.today)
        return out, DeidReport(removed, generalized, pseudonymized)
