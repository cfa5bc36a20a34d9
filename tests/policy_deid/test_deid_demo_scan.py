"""Issue item 10: de-identify a whole generated practice and scan the output for every identifier it held.

The demo practice (40 patients) plus a handful of hand-made resources carrying the kinds the generator
never produces (relatives, devices, photos, URLs, IPs, fax, licence numbers, a 90+ patient, restricted
ZIP3). From the RAW resources we collect every identifier value of the 18 Safe Harbor kinds, de-identify
every resource, serialize all outputs with orjson, and assert none of those values occurs.

Matching: values are matched in full (a phone number, a street line, an MRN, a base64 note); dates are
matched on their YYYY-MM-DD part; name parts are matched as whole words, case-insensitively; tokens
shorter than 3 characters are ignored (they would match everywhere, e.g. "IL" or "Jo").
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from fhirgate.core.policy.deid import SafeHarbor
from fhirgate.core.policy.pseudonym import Pseudonymizer
from fhirgate.demo.generator import generate_practice

TODAY = dt.date(2025, 6, 30)
DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})")
URL_OR_IP = re.compile(r"https?://[^\s\"'<>]+|\b(?:\d{1,3}\.){3}\d{1,3}\b")
TERMINOLOGY = ("http://terminology.hl7.org", "http://hl7.org/fhir", "http://loinc.org", "http://snomed.info",
               "http://unitsofmeasure.org", "http://www.nlm.nih.gov", "http://www.ama-assn.org", "urn:",
               "http://nucc.org", "https://nahdo.org", "http://fhirgate.dev/fhir")  # fmt: skip


def _extra_resources() -> list[dict[str, Any]]:
    """Identifier kinds the generator does not produce, in the shapes real systems send them."""
    v2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
    return [
        {
            "resourceType": "Patient",
            "id": "pat-extra-old",
            "name": [{"family": "Featherstonehaugh", "given": ["Clementine"]}],
            "birthDate": "1931-08-14",
            "identifier": [{"type": {"coding": [{"system": v2, "code": "DL"}]}, "value": "IL-D555-1234-9876"}],
            "telecom": [
                {"system": "fax", "value": "(217) 555-0177"},
                {"system": "url", "value": "https://clementine-f.example.net/blog"},
                {"system": "email", "value": "clementine.f@example.com"},
            ],
            "address": [{"line": ["9 Orchard Ln"], "city": "Chatham", "postalCode": "03601", "state": "NH"}],
            "photo": [{"contentType": "image/jpeg", "data": "L9j4AAQSkZJRgABAQEASABIAAD"}],
            "extension": [
                {"url": "http://example.org/fingerprint", "valueString": "FP-7f3e9a2b1c"},
                {"url": "http://example.org/vehicle", "valueString": "Plate IL 4KX-2291"},
                {"url": "http://example.org/login-ip", "valueString": "203.0.113.54"},
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                    "valueAddress": {"city": "Peoria", "postalCode": "61602", "state": "IL"},
                },
            ],
        },
        {
            "resourceType": "RelatedPerson",
            "id": "rp-1",
            "patient": {"reference": "Patient/pat-extra-old", "display": "Clementine Featherstonehaugh"},
            "name": [{"family": "Featherstonehaugh", "given": ["Ignatius"]}],
            "telecom": [{"system": "phone", "value": "217-555-0144"}],
            "address": [{"line": ["77 Elm Ct"], "city": "Rochester", "postalCode": "62563"}],
            "birthDate": "1960-02-29",
        },
        {
            "resourceType": "Device",
            "id": "dev-1",
            "status": "active",
            "patient": {"reference": "Patient/pat-extra-old"},
            "udiCarrier": [{"deviceIdentifier": "00643169007222", "carrierHRF": "(01)00643169007222(17)260101"}],
            "serialNumber": "PJN4410022",
            "lotNumber": "LX-8821-A",
            "url": "http://devices.example.org/pacemaker/PJN4410022",
        },
        {
            "resourceType": "Observation",
            "id": "obs-extra",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "72166-2"}]},
            "subject": {"reference": "Patient/pat-extra-old"},
            "effectiveDateTime": "2024-11-03T10:00:00Z",
            "note": [{"text": "Portal login from 198.51.100.23, see http://portal.example.org/u/cf"}],
            "valueString": "Clementine reports smoking",
        },
        {
            "resourceType": "Practitioner",
            "id": "prac-extra",
            "name": [{"family": "Abernathy", "given": ["Octavia"]}],
            "identifier": [{"system": "http://example.org/state-license", "value": "036-118822"}],
            "qualification": [{"identifier": [{"value": "BOARD-CERT-55123"}], "code": {"text": "MD"}}],
        },
    ]


def _walk(value: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield k, v
            yield from _walk(v, k)
    elif isinstance(value, list):
        for item in value:
            yield key, item
            yield from _walk(item, key)


def _collect(resources: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
    """(full values, name words) of every Safe Harbor identifier found in the raw resources."""
    values: set[str] = set()
    names: set[str] = set()
    for res in resources:
        values.add(res["id"])
        for key, val in _walk(res):
            if isinstance(val, dict) and ("family" in val or "given" in val):  # (A) HumanName
                for part in (val.get("family"), *(val.get("given") or [])):
                    if isinstance(part, str):
                        names.update(w for w in re.findall(r"\w+", part))
            if isinstance(val, dict) and "line" in val:  # (B) Address
                values.update(val.get("line") or [])
                values.update(v for v in (val.get("city"), val.get("district"), val.get("postalCode")) if v)
            if isinstance(val, dict) and "value" in val and key in ("telecom", "identifier"):  # (D-K, R)
                values.add(str(val["value"]))
            device_or_plan = ("subscriberId", "serialNumber", "lotNumber", "deviceIdentifier", "carrierHRF", "url")
            if key in device_or_plan and isinstance(val, str) and not val.startswith(TERMINOLOGY):  # (I, M, N)
                values.add(val)
            if key == "class" and isinstance(val, dict) and isinstance(val.get("value"), str):
                values.add(val["value"])  # (I) plan group number
            if key == "reference" and isinstance(val, str):  # (R) real record ids
                values.add(val)
                values.add(val.rsplit("/", 1)[-1])
            if key == "data" and isinstance(val, str):  # (P, Q, free text) attachment payloads
                values.add(val)
                text = base64.b64decode(val + "==", validate=False).decode("utf-8", "replace")
                values.update(m for m in URL_OR_IP.findall(text) if not m.startswith(TERMINOLOGY))
            if isinstance(val, str):
                if (m := DATE.match(val)) is not None:  # (C) full dates of birth and service
                    values.add(m.group(1))
                if key.startswith("value") or key == "text":
                    values.update(m for m in URL_OR_IP.findall(val) if not m.startswith(TERMINOLOGY))  # (N, O)
                if key == "valueString":
                    values.add(val)  # (P, L and anything else in free text extensions)
    return {v for v in values if len(v) >= 3}, {n for n in names if len(n) >= 3}


def _vocabulary(resources: list[dict[str, Any]]) -> str:
    """Every code display and CodeableConcept.text of the raw data (kept on purpose: clinical vocabulary)."""
    words: set[str] = set()
    for res in resources:
        for key, val in _walk(res):
            if isinstance(val, dict) and isinstance(val.get("coding"), list) and isinstance(val.get("text"), str):
                words.add(val["text"])
            if key == "coding" and isinstance(val, dict) and isinstance(val.get("display"), str):
                words.add(val["display"])
    return "\n".join(sorted(words))


def _output_strings(value: Any, out: set[str], definitions: set[str], key: str = "") -> None:
    """Every distinct string, number and key in de-identified output (deduplicated to keep the scan fast);
    code system, extension and profile URLs also go to `definitions` (they name definitions, not people)."""
    if isinstance(value, dict):
        out.update(value)
        for k, item in value.items():
            _output_strings(item, out, definitions, k)
    elif isinstance(value, list):
        for item in value:
            _output_strings(item, out, definitions, key)
    else:
        text = orjson.dumps(value).decode().strip('"')
        out.add(text)
        if key in ("system", "url", "profile"):
            definitions.add(text)


HARBOR = SafeHarbor(Pseudonymizer(b"demo-key-0123456789abcdef", "analyst"), today=TODAY)


@pytest.fixture(scope="module")
def practice() -> list[dict[str, Any]]:
    resources = [r for batch in generate_practice(patients=40, seed=11, today=TODAY) for r in batch]
    return resources + _extra_resources()


@pytest.fixture(scope="module")
def deidentified(practice: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [HARBOR.resource(r)[0] for r in practice]


def test_no_identifier_survives_deidentification(
    practice: list[dict[str, Any]], deidentified: list[dict[str, Any]]
) -> None:
    values, names = _collect(practice)
    assert len(names) > 50 and len(values) > 1000  # the collector really found things to look for
    # A payer's identifier such as "MEDICARE" is also a code display; clinical vocabulary is kept on purpose.
    vocabulary = _vocabulary(practice)
    values = {v for v in values if v not in vocabulary}
    names = {n for n in names if not re.search(rf"\b{re.escape(n)}\b", vocabulary, re.IGNORECASE)}
    strings: set[str] = set()
    definitions: set[str] = set()
    for out in deidentified:
        orjson.dumps(out)  # every output serializes
        _output_strings(out, strings, definitions)
    blob = "\n".join(sorted(strings))
    leaked = sorted(v for v in values if v in blob)
    assert not leaked, f"{len(leaked)} identifier values survived, e.g. {leaked[:5]}"
    # Names as whole words, case-insensitive; definition URLs ("…/service-price") are not names of people.
    words = set(re.findall(r"[^\W_]+", "\n".join(sorted(strings - definitions)).lower()))
    found = sorted(n for n in names if n.lower() in words)
    assert not found, f"names survived: {found[:10]}"


def test_scan_would_catch_a_leak(practice: list[dict[str, Any]]) -> None:
    values, names = _collect(practice[:200])
    raw = "\n".join(orjson.dumps(r).decode() for r in practice[:200])
    assert any(v in raw for v in values) and any(re.search(rf"\b{re.escape(n)}\b", raw) for n in names)


def test_clinical_content_and_links_survive(practice: list[dict[str, Any]], deidentified: list[dict[str, Any]]) -> None:
    pairs = list(zip(practice, deidentified, strict=True))
    patients = {out["id"] for raw, out in pairs if raw["resourceType"] == "Patient"}
    observations = [out for raw, out in pairs if raw["resourceType"] == "Observation"]
    assert len(observations) > 1000
    assert all(o["subject"]["reference"].removeprefix("Patient/") in patients for o in observations)
    assert all(o["code"]["coding"][0]["code"] for o in observations)
    assert any("valueQuantity" in o for o in observations)
    out = next(out for raw, out in pairs if raw["id"] == "pat-extra-old")
    assert out["address"] == [{"postalCode": "000", "state": "NH"}]
    assert "birthDate" not in out and any(e.get("valueString") == "90+" for e in out["extension"])
    demo_old = [out for raw, out in pairs if raw["resourceType"] == "Patient" and raw["birthDate"] < "1935-06-30"]
    assert demo_old and all("birthDate" not in p for p in demo_old)
