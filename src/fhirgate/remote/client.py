"""A small, typed, synchronous client for an upstream FHIR R4 server (under the remote FhirStore backend).

It reads, searches (following `next` links only on the configured server) and runs Patient/$everything,
validating every answer as what the interaction must return, and maps every upstream failure onto the
`UpstreamError` tree (fhirgate.remote.errors). No upstream body text reaches an error message: only the
HTTP status and OperationOutcome `issue.code` values (a closed FHIR vocabulary, checked by grammar).

Authentication is fhirgate's own (fhirgate.remote.auth); the MCP client's token is never forwarded. The
client never follows redirects, and never sends its credentials to a URL outside the configured base.
Synchronous on purpose: the service layer is synchronous and runs in worker threads.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson

from fhirgate.errors import ConfigError, InvalidInput
from fhirgate.remote.auth import UpstreamAuth
from fhirgate.remote.errors import (
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamForbidden,
    UpstreamMalformed,
    UpstreamRateLimited,
    UpstreamRefused,
    UpstreamUnavailable,
)

__all__ = ["FHIR_JSON", "FhirClient"]

Resource = dict[str, Any]

FHIR_JSON = "application/fhir+json"
_MAX_BODY = 64 << 20
_TYPE_RE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")  # FHIR R4 id
_PARAM_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-.:]{0,127}$")  # a search parameter name with modifier/chain
_ISSUE_CODE_RE = re.compile(r"^[a-z][a-z-]{0,39}$")  # FHIR R4 IssueType codes
_MAX_ISSUE_CODES = 5


class _Where:
    """What a request is, for error messages: host, interaction, resource type and (for a read) the id."""

    __slots__ = ("host", "interaction", "resource_id", "resource_type")

    def __init__(self, host: str, interaction: str, resource_type: str | None, resource_id: str | None = None):
        self.host = host
        self.interaction = interaction
        self.resource_type = resource_type
        self.resource_id = resource_id

    def kw(self, status: int | None = None) -> dict[str, Any]:
        return {
            "host": self.host,
            "interaction": self.interaction,
            "resource_type": self.resource_type,
            "resource_id": self.resource_id,
            "status": status,
        }


def _issue_codes(response: httpx.Response) -> tuple[str, ...] | None:
    """OperationOutcome issue codes of an error response, or None when the body is not an OperationOutcome."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return None
    issues = body.get("issue")
    codes: list[str] = []
    for issue in issues if isinstance(issues, list) else []:
        code = issue.get("code") if isinstance(issue, dict) else None
        if isinstance(code, str) and _ISSUE_CODE_RE.match(code) and code not in codes:
            codes.append(code)
    return tuple(codes[:_MAX_ISSUE_CODES])


def _codes_text(codes: tuple[str, ...] | None) -> str:
    if codes is None:
        return ""
    return f"; OperationOutcome issue codes: {', '.join(codes)}" if codes else "; OperationOutcome without issue codes"


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (RFC 9110 §10.2.3: delay-seconds or an HTTP-date)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


class FhirClient:
    """Typed access to one upstream FHIR R4 server's read, search, paging, $everything and metadata.

    `max_retries` bounds the retries after 429/503 with a Retry-After of at most `max_retry_wait`
    seconds (waited with `sleep`); a 401 is retried once after `auth.invalidate()`. `transport` is for
    tests (an httpx transport); `clock` reads wall time for Retry-After HTTP dates.
    """

    def __init__(
        self,
        base_url: str,
        auth: UpstreamAuth,
        *,
        timeout: float = 10.0,
        max_retries: int = 2,
        max_retry_wait: float = 2.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        try:
            url = httpx.URL(base_url)
        except (httpx.InvalidURL, TypeError):
            raise ConfigError("fhir base: not a valid URL") from None
        loopback = url.host in ("localhost", "127.0.0.1", "::1")
        if not url.host or not (url.scheme == "https" or (url.scheme == "http" and loopback)):
            raise ConfigError("fhir base: must be an https URL (http only to localhost)")
        if url.query or url.fragment:
            raise ConfigError("fhir base: must not carry a query or fragment")
        if max_retries < 0 or max_retry_wait < 0 or timeout <= 0:
            raise ConfigError("fhir client: timeout must be positive, max_retries and max_retry_wait not negative")
        self.base_url = str(url).rstrip("/")
        self._base = httpx.URL(self.base_url)
        self.host = url.host
        self._auth = auth
        self._timeout = timeout
        self._max_retries = max_retries
        self._max_retry_wait = max_retry_wait
        self._sleep = sleep
        self._clock = clock
        self._http = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False)
        self._capabilities: Resource | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FhirClient({self.base_url!r})"

    def __enter__(self) -> FhirClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- interactions ---------------------------------------------------------------------------------

    def capabilities(self, *, refresh: bool = False) -> Resource:
        """The server's CapabilityStatement (GET /metadata), fetched once and cached."""
        with self._lock:
            cached = self._capabilities
        if cached is not None and not refresh:
            return cached
        where = _Where(self.host, "metadata", None)
        body = self._get(f"{self.base_url}/metadata", [], where)
        assert body is not None
        if body.get("resourceType") != "CapabilityStatement" or not isinstance(body.get("rest", []), list):
            raise UpstreamMalformed("the answer is not a CapabilityStatement", **where.kw())
        with self._lock:
            self._capabilities = body
        return body

    def supports(self, resource_type: str, interaction: str) -> bool:
        """True when the server-mode CapabilityStatement lists the interaction (e.g. `read`, `search-type`)
        or operation (`everything` / `$everything`) for the type."""
        name = interaction.removeprefix("$")
        for rest in self.capabilities().get("rest", []):
            if not isinstance(rest, dict) or rest.get("mode") != "server":
                continue
            for res in rest.get("resource", []) if isinstance(rest.get("resource"), list) else []:
                if not isinstance(res, dict) or res.get("type") != resource_type:
                    continue
                codes = {i.get("code") for i in res.get("interaction", []) if isinstance(i, dict)}
                ops = {o.get("name") for o in res.get("operation", []) if isinstance(o, dict)}
                if name in codes or name in ops:
                    return True
        return False

    def read(self, resource_type: str, id: str) -> Resource | None:
        """The current resource, or None when the server answers 404 or 410 (absent or deleted)."""
        _check_type(resource_type)
        _check_id("id", id)
        where = _Where(self.host, "read", resource_type, id)
        body = self._get(f"{self.base_url}/{resource_type}/{id}", [], where, absent_ok=True)
        if body is None:
            return None
        if body.get("resourceType") != resource_type or body.get("id") != id:
            raise UpstreamMalformed("the answer is not the requested resource", **where.kw())
        return body

    def vread(self, resource_type: str, id: str, version_id: str) -> Resource | None:
        """One version (`GET [base]/[type]/[id]/_history/[vid]`, FHIR R4 §3.1.0.3), or None on 404/410."""
        _check_type(resource_type)
        _check_id("id", id)
        _check_id("version_id", version_id)
        where = _Where(self.host, "vread", resource_type, id)
        url = f"{self.base_url}/{resource_type}/{id}/_history/{version_id}"
        body = self._get(url, [], where, absent_ok=True)
        if body is None:
            return None
        if body.get("resourceType") != resource_type or body.get("id") != id:
            raise UpstreamMalformed("the answer is not the requested resource", **where.kw())
        return body

    def history(self, resource_type: str, id: str, params: Sequence[tuple[str, str]] = ()) -> Resource | None:
        """One page of `GET [base]/[type]/[id]/_history` (FHIR R4 §3.1.0.4): a validated history Bundle,
        or None when the server answers 404/410 (no such resource)."""
        _check_type(resource_type)
        _check_id("id", id)
        where = _Where(self.host, "history", resource_type, id)
        url = f"{self.base_url}/{resource_type}/{id}/_history"
        body = self._get(url, _check_params(params), where, absent_ok=True)
        if body is None:
            return None
        return _check_bundle(body, where, bundle_type="history", match_type=None)

    def search(self, resource_type: str, params: Sequence[tuple[str, str]] = ()) -> Resource:
        """One page of `GET [base]/[type]?params`: a validated searchset Bundle."""
        _check_type(resource_type)
        query = _check_params(params)
        where = _Where(self.host, "search", resource_type)
        body = self._get(f"{self.base_url}/{resource_type}", query, where)
        assert body is not None
        return _check_searchset(body, where, match_type=resource_type)

    def everything(self, patient_id: str, params: Sequence[tuple[str, str]] = ()) -> Resource:
        """One page of `GET [base]/Patient/[id]/$everything?params`: a validated searchset Bundle."""
        _check_id("patient_id", patient_id)
        query = _check_params(params)
        where = _Where(self.host, "everything", "Patient", patient_id)
        body = self._get(f"{self.base_url}/Patient/{patient_id}/$everything", query, where)
        assert body is not None
        return _check_searchset(body, where, match_type=None)

    def next_page(self, bundle: Resource, *, bundle_type: str = "searchset") -> Resource | None:
        """The page after `bundle` (its `link[relation=next]`), or None on the last page.

        The link is followed only when it lies under the configured base URL (same scheme, host, port and
        base path): a next link elsewhere is refused with UpstreamMalformed, never sent our credentials.
        """
        url = _next_link(bundle)
        if url is None:
            return None
        where = _Where(self.host, "page", None)
        try:
            target = self._base.join(url)
        except (httpx.InvalidURL, TypeError):
            raise UpstreamMalformed("the next link is not a URL", **where.kw()) from None
        if not self._under_base(target):
            raise UpstreamMalformed("the next link points outside the configured server; not followed", **where.kw())
        rest = target.path[len(self._base.path.rstrip("/")) :].lstrip("/")
        first = rest.split("/", 1)[0]
        if _TYPE_RE.match(first):
            where.resource_type = first
        where.interaction = "page (everything)" if rest.endswith("/$everything") else "page (search)"
        body = self._get(str(target), [], where)
        assert body is not None
        return _check_bundle(body, where, bundle_type=bundle_type, match_type=None)

    # -- transport ------------------------------------------------------------------------------------

    def _under_base(self, url: httpx.URL) -> bool:
        base = self._base
        if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port) or url.userinfo or url.fragment:
            return False
        prefix = base.path.rstrip("/")
        return url.path == prefix or url.path.startswith(prefix + "/") or (not prefix and url.path == "/")

    def _get(
        self, url: str, params: list[tuple[str, str]], where: _Where, *, absent_ok: bool = False
    ) -> Resource | None:
        """GET with our credentials, retries and the failure mapping; None for 404/410 when `absent_ok`."""
        auth_retried = False
        throttled = 0
        while True:
            headers = {"Accept": FHIR_JSON, **self._auth.headers()}
            try:
                response = self._http.get(url, params=tuple(params) if params else None, headers=headers)
            except httpx.TimeoutException:
                raise UpstreamUnavailable(f"timed out after {self._timeout:g}s", **where.kw()) from None
            except httpx.TransportError:
                raise UpstreamUnavailable("could not connect", **where.kw()) from None
            status = response.status_code
            if status == 200:
                return _json_resource(response, where)
            if status in (404, 410) and absent_ok:
                return None
            if status == 401:
                self._auth.invalidate()
                if not auth_retried:
                    auth_retried = True
                    continue
                raise UpstreamAuthFailed(
                    "fhirgate's credentials were refused (HTTP 401, after a token refresh)", **where.kw(status)
                )
            if status in (429, 503):
                delay = parse_retry_after(response.headers.get("Retry-After"), self._clock())
                if delay is not None and delay <= self._max_retry_wait and throttled < self._max_retries:
                    throttled += 1
                    self._sleep(delay)
                    continue
                if status == 429 or delay is not None:
                    after = "" if delay is None else f"; retry after {delay:g}s"
                    raise UpstreamRateLimited(
                        f"the server is throttling requests (HTTP {status}{after})",
                        retry_after=delay,
                        **where.kw(status),
                    )
            raise self._failure(response, where)

    def _failure(self, response: httpx.Response, where: _Where) -> UpstreamError:
        status = response.status_code
        codes = _issue_codes(response)
        if status == 403:
            return UpstreamForbidden(
                f"the server refused fhirgate's client this interaction (HTTP 403{_codes_text(codes)})",
                **where.kw(status),
            )
        if 300 <= status < 400:
            return UpstreamMalformed(f"unexpected redirect (HTTP {status}); not followed", **where.kw(status))
        if codes is not None and status >= 400:
            return UpstreamRefused(
                f"the server refused the request (HTTP {status}{_codes_text(codes)})",
                issue_codes=codes,
                **where.kw(status),
            )
        if status >= 500:
            return UpstreamUnavailable(f"server error (HTTP {status})", **where.kw(status))
        if status >= 400:
            return UpstreamRefused(f"the server refused the request (HTTP {status})", **where.kw(status))
        return UpstreamMalformed(f"unexpected HTTP status {status}", **where.kw(status))


def _check_type(resource_type: str) -> None:
    if not isinstance(resource_type, str) or not _TYPE_RE.match(resource_type):
        raise InvalidInput("resource_type", "not a FHIR resource type name")


def _check_id(name: str, value: str) -> None:
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise InvalidInput(name, "not a FHIR id", "1-64 of A-Z a-z 0-9 - .")


def _check_params(params: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for pair in params:
        if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise InvalidInput("params", "must be (name, value) pairs of strings")
        if not _PARAM_RE.match(pair[0]):
            raise InvalidInput("params", "a parameter name is malformed")
        out.append(pair)
    return out


def _json_resource(response: httpx.Response, where: _Where) -> Resource:
    content = response.content
    if len(content) > _MAX_BODY:
        raise UpstreamMalformed("the answer is too large", **where.kw(response.status_code))
    try:
        value = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise UpstreamMalformed("the answer is not JSON", **where.kw(response.status_code)) from None
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        raise UpstreamMalformed("the answer is not a FHIR resource", **where.kw(response.status_code))
    return value


def _next_link(bundle: Resource) -> str | None:
    links = bundle.get("link") if isinstance(bundle, dict) else None
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("relation") == "next":
            url = link.get("url")
            return url if isinstance(url, str) and url else None
    return None


def _check_searchset(body: Resource, where: _Where, *, match_type: str | None) -> Resource:
    """A Bundle of type searchset whose entries hold resources; matches of the searched type when given."""
    return _check_bundle(body, where, bundle_type="searchset", match_type=match_type)


def _check_bundle(body: Resource, where: _Where, *, bundle_type: str, match_type: str | None) -> Resource:
    """A Bundle of `bundle_type` whose entries hold resources (a history entry may hold none: a deletion)."""
    if body.get("resourceType") != "Bundle" or body.get("type") != bundle_type:
        raise UpstreamMalformed(f"the answer is not a {bundle_type} Bundle", **where.kw())
    entries = body.get("entry", [])
    links = body.get("link", [])
    total = body.get("total")
    if not isinstance(entries, list) or not isinstance(links, list):
        raise UpstreamMalformed("the Bundle's entry or link is not a list", **where.kw())
    if not all(isinstance(link, dict) for link in links):
        raise UpstreamMalformed("a Bundle link is not an object", **where.kw())
    if total is not None and (isinstance(total, bool) or not isinstance(total, int) or total < 0):
        raise UpstreamMalformed("the Bundle's total is not a count", **where.kw())
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if bundle_type == "history" and isinstance(entry, dict) and resource is None:
            continue  # a deleted version: request.method DELETE and no resource (FHIR R4 §3.1.0.4)
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise UpstreamMalformed("a Bundle entry holds no resource", **where.kw())
        if not isinstance(resource.get("id"), str) and resource["resourceType"] != "OperationOutcome":
            raise UpstreamMalformed("a Bundle entry's resource has no id", **where.kw())
        search = entry.get("search")
        mode = search.get("mode", "match") if isinstance(search, dict) else "match"
        if match_type is not None and mode == "match" and resource["resourceType"] != match_type:
            raise UpstreamMalformed("a matched entry is not of the searched type", **where.kw())
    return body
