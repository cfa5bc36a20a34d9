"""A fake upstream FHIR R4 server for respx: fhirgate's own SQLite store answering read, vread, history,
search (with `_offset` or opaque `next` links), $everything and /metadata, with failures injectable per path."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import httpx
import orjson

from fhirgate.core.fhir.search import parse_search
from fhirgate.errors import FhirgateError
from fhirgate.store.contract import FhirStore, SearchPage, StoredResource

BASE = "https://fhir.example.org/r4"
Handler = Callable[[httpx.Request], httpx.Response]


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status, content=orjson.dumps(body), headers={"Content-Type": "application/fhir+json", **(headers or {})}
    )


def outcome(status: int, code: str = "invalid", diagnostics: str = "Zebediah Quux secret text") -> httpx.Response:
    """An OperationOutcome error answer whose diagnostics must never reach a tool result."""
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
    }
    return _json(body, status)


class FakeUpstream:
    """Serves `store` at BASE; `paging` "offset" advertises `_offset`, "links" hides it behind opaque links."""

    def __init__(self, store: FhirStore, *, paging: str = "offset", everything: bool = True) -> None:
        self.store = store
        self.paging = paging
        self.everything = everything
        self.requests: list[httpx.Request] = []
        self.failures: dict[str, Handler] = {}  # path suffix (e.g. "/Observation") -> handler
        self._pages: dict[str, tuple[str, list[tuple[str, str]], int]] = {}
        self._ids = itertools.count(1)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/r4")
        for suffix, handler in self.failures.items():
            if path.endswith(suffix):
                return handler(request)
        params = parse_qsl(request.url.query.decode(), keep_blank_values=True)
        try:
            return self._route(path.strip("/").split("/"), params)
        except FhirgateError as exc:
            return outcome(400, "invalid", exc.message)

    def _route(self, parts: list[str], params: list[tuple[str, str]]) -> httpx.Response:
        if parts == ["metadata"]:
            return _json(self.capabilities())
        if parts == [""] and params and params[0][0] == "_page":
            rtype, query, offset = self._pages[params[0][1]]
            return self._search(rtype, query, offset)
        if len(parts) == 1:
            return self._search(parts[0], params, 0)
        if len(parts) == 3 and parts[2] == "$everything":
            return self._everything(parts[1], params)
        if len(parts) == 2:
            found = self.store.read(parts[0], parts[1])
            return _json(found.body) if found else outcome(404, "not-found")
        if len(parts) == 3 and parts[2] == "_history":
            versions = self.store.history(parts[0], parts[1])
            entries = [{"resource": v.body} for v in versions if not v.deleted]
            return _json({"resourceType": "Bundle", "type": "history", "entry": entries})
        if len(parts) == 4 and parts[2] == "_history":
            found = self.store.vread(parts[0], parts[1], int(parts[3]))
            return _json(found.body) if found else outcome(404, "not-found")
        return outcome(404, "not-supported")

    def capabilities(self) -> dict[str, Any]:
        resources = []
        for rtype in ("Patient", "Observation", "Condition", "Consent", "Encounter", "Practitioner", "CareTeam"):
            res: dict[str, Any] = {"type": rtype, "interaction": [{"code": "read"}, {"code": "search-type"}]}
            if rtype == "Patient" and self.everything:
                res["operation"] = [
                    {"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}
                ]
            resources.append(res)
        rest: dict[str, Any] = {"mode": "server", "resource": resources}
        if self.paging == "offset":
            rest["searchParam"] = [{"name": "_offset", "type": "number"}]
        return {"resourceType": "CapabilityStatement", "status": "active", "kind": "instance", "rest": [rest]}

    def _bundle(self, page: SearchPage, link: str | None, total: int | None) -> dict[str, Any]:
        entries = [{"resource": s.body, "search": {"mode": "match"}} for s in page.matches]
        entries += [{"resource": s.body, "search": {"mode": "include"}} for s in page.included]
        body: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
        if total is not None:
            body["total"] = total
        if link is not None:
            body["link"] = [{"relation": "next", "url": link}]
        return body

    def _search(self, rtype: str, params: list[tuple[str, str]], offset: int) -> httpx.Response:
        own = [(k, v) for k, v in params if k != "_offset"]
        offset = offset or next((int(v) for k, v in params if k == "_offset"), 0)
        query = parse_search(rtype, [*own, ("_offset", str(offset))])
        page = self.store.search(query)
        link = None
        if page.next_offset is not None:
            if self.paging == "offset":
                link = f"{BASE}/{rtype}?" + str(httpx.QueryParams([*own, ("_offset", str(page.next_offset))]))
            else:
                token = f"p{next(self._ids)}"
                self._pages[token] = (rtype, own, page.next_offset)
                link = f"{BASE}?_page={token}"
        return _json(self._bundle(page, link, page.total))

    def _everything(self, pid: str, params: list[tuple[str, str]]) -> httpx.Response:
        args = dict(params)
        types = args["_type"].split(",") if "_type" in args else None
        count, offset = int(args.get("_count", "50")), int(args.get("_offset", "0"))
        page = self.store.compartment_page(pid, types=types, since=args.get("_since"), count=count, offset=offset)
        link = None
        if page.next_offset is not None:
            own = [(k, v) for k, v in params if k != "_offset"]
            link = f"{BASE}/Patient/{pid}/$everything?" + str(
                httpx.QueryParams([*own, ("_offset", str(page.next_offset))])
            )
        return _json(self._bundle(page, link, page.total))


def bodies(items: list[StoredResource]) -> list[tuple[str, str]]:
    """(type, id) of each stored resource, in order."""
    return [(s.resource_type, s.id) for s in items]
