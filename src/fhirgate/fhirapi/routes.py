"""The FHIR R4 REST interactions under /fhir, mapped onto the Gateway's governed use cases (no policy here).

Runs synchronously in a worker thread, one RequestContext per interaction: the use case writes the request's one
audit record; whatever the service never saw (an unknown route, a method not allowed, a malformed batch entry) is
recorded by `finish`, so every request, and every batch entry, leaves exactly one record (docs/fhir-api.md).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from fhirgate.errors import AuditError, FhirgateError, InvalidInput
from fhirgate.fhirapi import bundles
from fhirgate.fhirapi.outcomes import Reply, audit_outcome, error_reply, outcome, status_line
from fhirgate.service.context import RequestContext
from fhirgate.service.gateway import Gateway
from fhirgate.service.gateway_fhir import WriteEntry

log = logging.getLogger(__name__)
BATCH_MAX_ENTRIES = 50
PROPOSAL_SYSTEM = "urn:fhirgate:proposal"
# Parameters the edge has already applied (`_format`) or that change nothing here (`_pretty`).
_EDGE_PARAMS = frozenset({"_format", "_pretty"})
_TOTAL_VALUES = ("none", "estimate", "accurate")


@dataclass(frozen=True, slots=True)
class FhirRequest:
    """One interaction: method, path segments after /fhir, parameters (query and form) and the parsed JSON body."""

    method: str
    path: tuple[str, ...]
    params: list[tuple[str, str]] = field(default_factory=list)
    body: Any = None
    if_match: str | None = None


class Refusal(Exception):
    """An answer decided by the API itself (405, 404 route, 400 bundle shape), carried out of nested calls."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def _refuse(status: int, code: str, message: str, **headers: str) -> Refusal:
    return Refusal(Reply(status, outcome(code, message), dict(headers)))


@dataclass(slots=True)
class _Options:
    """The result parameters of one request, split from the search parameters proper."""

    rest: dict[str, list[str]] = field(default_factory=dict)
    count: int | None = None
    cursor: str | None = None
    elements: list[str] | None = None
    summary: str | None = None


def _options(params: Sequence[tuple[str, str]], allowed: tuple[str, ...] | None = None) -> _Options:
    """Split result parameters (FHIR R4 §3.1.1.5) from the rest; `allowed` lists the only other names accepted."""
    out, seen = _Options(), set()
    for key, value in params:
        if key in _EDGE_PARAMS:
            continue
        if key in ("_count", "_cursor", "_elements", "_summary", "_total"):
            if key in seen:
                raise InvalidInput(key, "given more than once")
            seen.add(key)
        if key == "_count":
            if not value.isdigit() or len(value) > 6:
                raise InvalidInput("_count", "must be a positive integer")
            out.count = int(value)
        elif key == "_cursor":
            out.cursor = value
        elif key == "_elements":
            out.elements = [e.strip() for e in value.split(",") if e.strip()]
        elif key == "_summary":
            out.summary = value
        elif key == "_total":  # totals are given on a first page whenever they can be counted
            if value not in _TOTAL_VALUES:
                raise InvalidInput("_total", "unknown value", ", ".join(_TOTAL_VALUES))
        elif key == "_offset":
            raise InvalidInput("_offset", "is not accepted: follow the Bundle's next link", "_cursor from a next link")
        elif allowed is not None and key not in allowed:
            raise InvalidInput(key, "is not a parameter of this interaction", ", ".join(allowed) or "none")
        else:
            out.rest.setdefault(key, []).append(value)
    return out


def proposal_outcome(result: Mapping[str, Any]) -> dict[str, Any]:
    """The informational OperationOutcome of a write that became a proposal: its id and who must approve it."""
    proposal = result["proposal"]
    pid = str(proposal["id"])
    text = (
        f"Accepted as proposal {pid} ({proposal['kind']} {proposal['target']}); nothing is written until a person "
        f"approves it: `fhirgate approvals show {pid}`, then `fhirgate approvals approve {pid} --as NAME` (or "
        f"reject). It expires at {proposal['expires']}."
    )
    body = outcome("informational", text, severity="information")
    body["issue"][0]["details"] = {"coding": [{"system": PROPOSAL_SYSTEM, "code": pid}], "text": f"proposal {pid}"}
    return body


class FhirApi:
    """The interactions of the FHIR API over one Gateway; `base` is the public base URL (…/fhir)."""

    def __init__(self, gateway: Gateway, base: str) -> None:
        self.gateway = gateway
        self.base = base.rstrip("/")

    def answer(self, ctx: RequestContext, request: FhirRequest) -> Reply:
        """Run one interaction and make sure it left its one audit record."""
        return self.finish(ctx, self.handle(ctx, request))

    def handle(self, ctx: RequestContext, request: FhirRequest) -> Reply:
        """The interaction's reply; errors become OperationOutcomes, never tracebacks."""
        try:
            return self._route(ctx, request)
        except Refusal as refusal:
            return refusal.reply
        except FhirgateError as exc:
            return error_reply(exc)
        except Exception as exc:  # a bug must not leak a traceback or record values
            log.error("FHIR request %s failed: %s", ctx.request_id, type(exc).__name__)
            log.debug("traceback for request %s", ctx.request_id, exc_info=True)
            return Reply(500, outcome("exception", f"internal error (request {ctx.request_id})"))

    def finish(self, ctx: RequestContext, reply: Reply) -> Reply:
        """Write the record for an interaction no use case recorded (a 405, an unknown route, a bad body)."""
        if ctx.audited:
            return reply
        try:
            self.gateway.audit.write(
                ctx, outcome=audit_outcome(reply.status), interaction="http", reason=f"http.{reply.status}"
            )
        except AuditError:
            return Reply(503, outcome("transient", "audit log unavailable; nothing was returned"))
        return reply

    # -- routing ----------------------------------------------------------------------------------

    def _route(self, ctx: RequestContext, req: FhirRequest) -> Reply:
        p, m = req.path, req.method
        if not p:
            self._allow(m, "POST")
            return self._bundle(ctx, req)
        if len(p) == 1:
            self._allow(m, "GET", "POST")
            return self._search(ctx, p[0], req.params) if m == "GET" else self._create(ctx, p[0], req.body)
        if len(p) == 2 and p[1] == "_search":
            self._allow(m, "POST")
            return self._search(ctx, p[0], req.params)
        if len(p) == 2:
            if m in ("DELETE", "PATCH"):
                raise _refuse(
                    405,
                    "not-supported",
                    f"{m} is not available: fhirgate never deletes or patches through the API; propose a "
                    "new version with PUT (it becomes a proposal a person approves)",
                    Allow="GET, PUT",
                )
            self._allow(m, "GET", "PUT")
            return self._read(ctx, p[0], p[1], req.params) if m == "GET" else self._update(ctx, req)
        if len(p) == 3 and p[2] == "_history":
            self._allow(m, "GET")
            return self._history(ctx, p[0], p[1], req.params)
        if len(p) == 3 and p[0] == "Patient" and p[2] == "$everything":
            self._allow(m, "GET")
            return self._everything(ctx, p[1], req.params)
        if len(p) == 4 and p[2] == "_history":
            self._allow(m, "GET")
            return self._read(ctx, p[0], p[1], req.params, vid=p[3])
        raise _refuse(404, "not-found", "no such FHIR interaction at this URL (see GET /fhir/metadata)")

    @staticmethod
    def _allow(method: str, *allowed: str) -> None:
        if method not in allowed:
            message = f"{method} is not supported here"
            raise _refuse(405, "not-supported", message, Allow=", ".join(allowed))

    # -- reads ------------------------------------------------------------------------------------

    def _read(self, ctx: RequestContext, rtype: str, id: str, params: list[tuple[str, str]], vid: str = "") -> Reply:
        _options(params, ())
        if vid:
            ctx.name = "vread"
            resource = self.gateway.fhir_vread(ctx, rtype, id, vid)
        else:
            ctx.name = "read"
            resource = self.gateway.fhir_read(ctx, rtype, id)
        version = (resource.get("meta") or {}).get("versionId")
        return Reply(200, resource, {"ETag": f'W/"{version}"'} if version else {})

    def _search(self, ctx: RequestContext, rtype: str, params: list[tuple[str, str]]) -> Reply:
        ctx.name = "search-type"
        opts = _options(params)
        page = self.gateway.fhir_search(
            ctx,
            rtype,
            opts.rest,
            count=opts.count if opts.count is not None else 20,
            cursor=opts.cursor,
            elements=opts.elements,
            summary=opts.summary,
        )
        return Reply(200, self._paged(rtype, params, opts.cursor, page.next_cursor, page))

    def _everything(self, ctx: RequestContext, patient_id: str, params: list[tuple[str, str]]) -> Reply:
        ctx.name = "$everything"
        opts = _options(params, ("_since", "_type"))
        types = [t.strip() for v in opts.rest.get("_type", []) for t in v.split(",") if t.strip()] or None
        since = opts.rest.get("_since", [None])[-1]
        page = self.gateway.fhir_everything(
            ctx,
            patient_id,
            types=types,
            since=since,
            count=opts.count if opts.count is not None else 50,
            cursor=opts.cursor,
        )
        path = f"Patient/{patient_id}/$everything"
        return Reply(200, self._paged(path, params, opts.cursor, page.next_cursor, page))

    def _paged(self, path: str, params: list[tuple[str, str]], cursor: str | None, nxt: str | None, page: Any) -> Any:
        self_url = bundles.page_url(self.base, path, params, cursor)
        next_url = bundles.page_url(self.base, path, params, nxt) if nxt else None
        return bundles.searchset(
            self.base, page.matches, page.included, self_url=self_url, next_url=next_url, total=page.total
        )

    def _history(self, ctx: RequestContext, rtype: str, id: str, params: list[tuple[str, str]]) -> Reply:
        ctx.name = "history-instance"
        opts = _options(params, ())
        entries, nxt = self.gateway.fhir_history(
            ctx, rtype, id, count=opts.count if opts.count is not None else 50, cursor=opts.cursor
        )
        path = f"{rtype}/{id}/_history"
        self_url = bundles.page_url(self.base, path, params, opts.cursor)
        next_url = bundles.page_url(self.base, path, params, nxt) if nxt else None
        return Reply(200, bundles.history(self.base, entries, self_url=self_url, next_url=next_url))

    # -- writes: proposals ------------------------------------------------------------------------

    @staticmethod
    def _resource(body: Any, rtype: str, where: str = "body") -> dict[str, Any]:
        if not isinstance(body, dict) or body.get("resourceType") != rtype:
            raise InvalidInput(where, f"must be a {rtype} resource matching the URL")
        return body

    def _create(self, ctx: RequestContext, rtype: str, body: Any) -> Reply:
        ctx.name = "create"
        result = self.gateway.create_resource(ctx, self._resource(body, rtype))
        return Reply(202, proposal_outcome(result))

    def _update(self, ctx: RequestContext, req: FhirRequest) -> Reply:
        ctx.name = "update"
        rtype, rid = req.path
        resource = dict(self._resource(req.body, rtype))
        if resource.get("id") != rid:
            raise InvalidInput("id", "the resource's id must match the URL (FHIR R4 §3.1.0.5 update)")
        meta = resource.get("meta") if isinstance(resource.get("meta"), dict) else {}
        if req.if_match and isinstance(meta, dict) and not meta.get("versionId"):
            # FHIR R4 §3.1.0.5.3: If-Match: W/"n" names the version the client read.
            resource["meta"] = {**meta, "versionId": req.if_match.removeprefix("W/").strip('"')}
        result = self.gateway.update_resource(ctx, resource)
        return Reply(202, proposal_outcome(result))

    # -- batch and transaction (FHIR R4 §3.1.0.11) ------------------------------------------------

    def _bundle(self, ctx: RequestContext, req: FhirRequest) -> Reply:
        body = req.body
        kind = body.get("type") if isinstance(body, dict) and body.get("resourceType") == "Bundle" else None
        if kind not in ("batch", "transaction"):
            raise InvalidInput("Bundle.type", "POST /fhir takes a Bundle of type batch or transaction")
        entries = body.get("entry") or []
        if not isinstance(entries, list) or len(entries) > BATCH_MAX_ENTRIES:
            raise InvalidInput("Bundle.entry", f"at most {BATCH_MAX_ENTRIES} entries")
        if kind == "transaction":
            return self._transaction(ctx, entries)
        ctx.name = "batch"
        out = [self._batch_entry(ctx, i, e) for i, e in enumerate(entries)]
        if out:
            ctx.audited = True  # each entry left its own record (request id `<batch id>-<n>`)
        return Reply(200, bundles.response_bundle("batch-response", out))

    def _entry_request(self, index: int, entry: Any) -> FhirRequest:
        """An entry's request as a FhirRequest (relative URL, or absolute under this server's base)."""
        request = entry.get("request") if isinstance(entry, dict) else None
        method = request.get("method") if isinstance(request, dict) else None
        url = request.get("url") if isinstance(request, dict) else None
        if not isinstance(method, str) or not isinstance(url, str) or not url:
            raise InvalidInput(f"entry[{index}].request", "needs method and url")
        if "://" in url:
            if not url.startswith(self.base + "/"):
                raise InvalidInput(f"entry[{index}].request.url", "must be relative or under this server's base")
            url = url[len(self.base) :]
        path, _, query = url.partition("?")
        segments = tuple(s for s in path.split("/") if s)
        if not segments:
            raise InvalidInput(f"entry[{index}].request.url", "must name a resource type (no nested bundles)")
        if_match = request.get("ifMatch") if isinstance(request, dict) else None
        return FhirRequest(
            method.upper(),
            segments,
            parse_qsl(query, keep_blank_values=True),
            entry.get("resource"),
            if_match if isinstance(if_match, str) else None,
        )

    def _batch_entry(self, ctx: RequestContext, index: int, entry: Any) -> dict[str, Any]:
        """One batch entry, run under policy as its own interaction with its own audit record."""
        sub = RequestContext(
            ctx.principal,
            request_id=f"{ctx.request_id}-{index}",
            transport=ctx.transport,
            method=ctx.method,
            name="batch-entry",
            client_address=ctx.client_address,
        )
        try:
            request = self._entry_request(index, entry)
        except FhirgateError as exc:
            reply = error_reply(exc)
        else:
            reply = self.handle(sub, request)
        reply = self.finish(sub, reply)
        response: dict[str, Any] = {"status": status_line(reply.status)}
        if "ETag" in reply.headers:
            response["etag"] = reply.headers["ETag"]
        if reply.status == 200:
            return {"resource": reply.body, "response": response}
        response["outcome"] = reply.body
        return {"response": response}

    def _transaction(self, ctx: RequestContext, entries: list[Any]) -> Reply:
        """Writes only, all proposed or none (the service checks every entry before proposing any)."""
        ctx.name = "transaction"
        writes: list[WriteEntry] = []
        for index, entry in enumerate(entries):
            req = self._entry_request(index, entry)
            if req.method in ("DELETE", "PATCH"):
                raise _refuse(405, "not-supported", f"entry[{index}]: {req.method} is not available through the API")
            if req.method == "POST" and len(req.path) == 1:
                writes.append(WriteEntry("create", self._resource(req.body, req.path[0], f"entry[{index}].resource")))
            elif req.method == "PUT" and len(req.path) == 2:
                resource = self._resource(req.body, req.path[0], f"entry[{index}].resource")
                if resource.get("id") != req.path[1]:
                    raise InvalidInput(f"entry[{index}].resource.id", "must match the entry's url")
                writes.append(WriteEntry("update", resource))
            else:
                raise InvalidInput(
                    f"entry[{index}].request", "a transaction takes writes only (POST Type, PUT Type/id)", "a batch"
                )
        results = self.gateway.fhir_transaction(ctx, writes)
        out = [{"response": {"status": status_line(202), "outcome": proposal_outcome(r)}} for r in results]
        return Reply(202, bundles.response_bundle("transaction-response", out))
