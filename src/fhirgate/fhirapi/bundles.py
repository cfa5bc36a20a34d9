"""Pure builders for what the FHIR API returns: searchset, history and batch/transaction-response Bundles and
the CapabilityStatement (FHIR R4 §2.36 Bundle, §3.1.0 RESTful API, §2.40 CapabilityStatement)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fhirgate import __version__
from fhirgate.core.fhir.definitions import SUPPORTED_TYPES, search_params
from fhirgate.core.fhir.search import SEARCHABLE_TYPES
from fhirgate.service.gateway_fhir import HistoryEntry

FHIR_VERSION = "4.0.1"
SMART_SECURITY = "http://terminology.hl7.org/CodeSystem/restful-security-service"
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
EVERYTHING_DEFINITION = "http://hl7.org/fhir/OperationDefinition/Patient-everything"
# Search parameters every type answers from the store's own columns (FHIR R4 §3.1.1.5, common parameters).
_COMMON = (("_id", "token"), ("_lastUpdated", "date"))


def now_instant() -> str:
    """The current time as a FHIR instant (UTC, seconds)."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _bundle(kind: str) -> dict[str, Any]:
    return {"resourceType": "Bundle", "id": uuid.uuid4().hex, "meta": {"lastUpdated": now_instant()}, "type": kind}


def page_url(base: str, path: str, params: Sequence[tuple[str, str]], cursor: str | None = None) -> str:
    """A link URL: the request's own parameters (minus any cursor), plus `_cursor` for another page."""
    kept = [(k, v) for k, v in params if k != "_cursor"]
    if cursor is not None:
        kept.append(("_cursor", cursor))
    query = urlencode(kept)
    return f"{base}/{path}" + (f"?{query}" if query else "")


def searchset(
    base: str,
    matches: Iterable[dict[str, Any]],
    included: Iterable[dict[str, Any]],
    *,
    self_url: str,
    next_url: str | None,
    total: int | None,
) -> dict[str, Any]:
    """A searchset Bundle (FHIR R4 §3.1.1.2): `total` only when counted, entries in mode match then include."""
    bundle = _bundle("searchset")
    if total is not None:
        bundle["total"] = total
    bundle["link"] = [{"relation": "self", "url": self_url}]
    if next_url is not None:
        bundle["link"].append({"relation": "next", "url": next_url})
    entries = [_entry(base, r, "match") for r in matches] + [_entry(base, r, "include") for r in included]
    if entries:
        bundle["entry"] = entries
    return bundle


def _entry(base: str, resource: dict[str, Any], mode: str) -> dict[str, Any]:
    full = f"{base}/{resource.get('resourceType')}/{resource.get('id')}"
    return {"fullUrl": full, "resource": resource, "search": {"mode": mode}}


def history(base: str, entries: Iterable[HistoryEntry], *, self_url: str, next_url: str | None) -> dict[str, Any]:
    """A history Bundle (FHIR R4 §3.1.0.4): newest first; each entry's request says how the version came to be."""
    bundle = _bundle("history")
    bundle["link"] = [{"relation": "self", "url": self_url}]
    if next_url is not None:
        bundle["link"].append({"relation": "next", "url": next_url})
    out: list[dict[str, Any]] = []
    for item in entries:
        ref = f"{item.resource_type}/{item.id}"
        if item.resource is None:
            request, status = {"method": "DELETE", "url": ref}, "204 No Content"
        elif item.version == 1:
            request, status = {"method": "POST", "url": item.resource_type}, "201 Created"
        else:
            request, status = {"method": "PUT", "url": ref}, "200 OK"
        entry: dict[str, Any] = {"fullUrl": f"{base}/{ref}"}
        if item.resource is not None:
            entry["resource"] = item.resource
        entry["request"] = request
        entry["response"] = {"status": status, "etag": f'W/"{item.version}"', "lastModified": item.last_updated}
        out.append(entry)
    if out:
        bundle["entry"] = out
    return bundle


def response_bundle(kind: str, entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A batch-response or transaction-response Bundle (FHIR R4 §3.1.0.11) from prepared entries."""
    bundle = _bundle(kind)
    if entries:
        bundle["entry"] = list(entries)
    return bundle


def _search_params(resource_type: str) -> list[dict[str, str]]:
    defs = search_params(resource_type)
    out = [{"name": n, "type": t} for n, t in _COMMON]
    out += [
        {"name": code, "type": d.type}
        for code, d in sorted(defs.items())
        if d.type in SEARCHABLE_TYPES and not code.startswith("_")
    ]
    return out


def capability_statement(
    base: str, *, authorization_servers: Sequence[str], resource_metadata: str, writes: bool
) -> dict[str, Any]:
    """The server's CapabilityStatement (kind instance): what /fhir answers, per type, and how to authorize."""
    interactions = ["read", "vread", "search-type", "history-instance"]
    if writes:
        interactions += ["create", "update"]
    resources: list[dict[str, Any]] = []
    for rtype in SUPPORTED_TYPES:
        entry: dict[str, Any] = {
            "type": rtype,
            "interaction": [{"code": code} for code in interactions],
            "versioning": "versioned",
            "readHistory": True,
            "searchParam": _search_params(rtype),
        }
        if rtype == "Patient":
            entry["operation"] = [{"name": "everything", "definition": EVERYTHING_DEFINITION}]
        resources.append(entry)
    security: dict[str, Any] = {
        "cors": False,
        "service": [{"coding": [{"system": SMART_SECURITY, "code": "SMART-on-FHIR"}], "text": "OAuth2 using SMART"}],
        "description": (
            "Bearer tokens (RFC 6750) from the authorization servers listed in the protected resource metadata "
            f"({resource_metadata}, RFC 9728), audience = this server's resource URL; SMART v2 scopes (.r read, "
            ".s search) and fhirgate's governance policy apply to every interaction. Writes become proposals "
            "a person approves (202 Accepted)."
        ),
    }
    oauth = [{"url": "issuer", "valueUri": a} for a in authorization_servers]
    oauth.append({"url": "resource-metadata", "valueUri": resource_metadata})
    security["extension"] = [{"url": OAUTH_URIS, "extension": oauth}]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": now_instant(),
        "publisher": "fhirgate",
        "kind": "instance",
        "software": {"name": "fhirgate", "version": __version__},
        "implementation": {"description": "fhirgate FHIR R4 API", "url": base},
        "fhirVersion": FHIR_VERSION,
        "format": ["json", "application/fhir+json"],
        "rest": [
            {
                "mode": "server",
                "security": security,
                "resource": resources,
                "interaction": [{"code": "batch"}, {"code": "transaction"}],
            }
        ],
    }
