"""OperationOutcome bodies and HTTP statuses for every error the FHIR API returns, so no error is ever a traceback.

FHIR R4 §3.1.0.1.9 (http.html "Handling Errors"): an error response carries an OperationOutcome. Messages come
from fhirgate's errors, which name parameters, types and ids, never values from records (no PHI).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from fhirgate.errors import (
    AccessDenied,
    AuditError,
    AuthenticationError,
    Conflict,
    FhirgateError,
    InvalidInput,
    NotFound,
    RateLimited,
    ValidationFailed,
)
from fhirgate.service.gateway_fhir import Gone

FHIR_JSON = "application/fhir+json"
# FHIR R4 issue-type codes (http://hl7.org/fhir/issue-type) per fhirgate error.
_ISSUE_CODE: dict[type[FhirgateError], tuple[int, str]] = {
    Gone: (410, "deleted"),
    NotFound: (404, "not-found"),
    AccessDenied: (403, "forbidden"),
    AuthenticationError: (401, "login"),
    RateLimited: (429, "throttled"),
    InvalidInput: (400, "invalid"),
    ValidationFailed: (422, "processing"),
    Conflict: (409, "conflict"),
    AuditError: (503, "transient"),
}


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer: status, FHIR JSON body and extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def outcome(
    code: str,
    diagnostics: str,
    *,
    severity: str = "error",
    expression: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """One-issue OperationOutcome; `reason` (a policy decision code) goes in issue.details.coding."""
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if reason:
        issue["details"] = {"coding": [{"system": "urn:fhirgate:reason", "code": reason}], "text": reason}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def information(diagnostics: str) -> dict[str, Any]:
    """An informational OperationOutcome (a successful entry's outcome)."""
    return outcome("informational", diagnostics, severity="information")


def param_name(param: str) -> str:
    """The FHIR name of a service parameter (the service prefixes search parameters with `params.`)."""
    names = {"count": "_count", "elements": "_elements", "summary": "_summary", "cursor": "_cursor"}
    names |= {"types": "_type", "since": "_since", "patient_id": "id", "resource_type": "type"}
    return names.get(param, param.removeprefix("params."))


def error_reply(exc: FhirgateError) -> Reply:
    """The status and OperationOutcome for a service error (429 with Retry-After, 403 with the reason code)."""
    status, code = next(((s, c) for t, (s, c) in _ISSUE_CODE.items() if isinstance(exc, t)), (500, "exception"))
    headers: dict[str, str] = {}
    if isinstance(exc, InvalidInput):
        name = param_name(exc.param)
        text = f"{name}: {exc.problem}" + (f" (allowed: {exc.allowed})" if exc.allowed else "")
        return Reply(status, outcome(code, text, expression=name))
    if isinstance(exc, AccessDenied):
        return Reply(status, outcome(code, exc.message, reason=exc.reason))
    if isinstance(exc, RateLimited):
        if exc.retry_after is not None:  # RFC 9110 §10.2.3 Retry-After in whole seconds
            headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        return Reply(status, outcome(code, exc.message, reason="rate_limited"), headers)
    if status == 500:
        # InternalError and anything unexpected: the message is already detail-free (service.auditing).
        return Reply(500, outcome(code, exc.message if exc.code == "internal-error" else "internal error"))
    return Reply(status, outcome(code, exc.message))


def status_line(status: int) -> str:
    """`Bundle.entry.response.status`: the code and its reason phrase (FHIR R4 §3.1.0.11.1)."""
    phrases = {
        200: "OK",
        202: "Accepted",
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        405: "Method Not Allowed",
        409: "Conflict",
        410: "Gone",
        415: "Unsupported Media Type",
        422: "Unprocessable Entity",
        429: "Too Many Requests",
        500: "Internal Server Error",
        501: "Not Implemented",
        503: "Service Unavailable",
    }
    return f"{status} {phrases.get(status, '')}".strip()


def audit_outcome(status: int) -> str:
    """The audit outcome of an HTTP status the edge answered by itself."""
    if status < 400:
        return "success"
    if status in (401, 403, 421, 429):
        return "denied"
    if status in (404, 410):
        return "not-found"
    if status < 500:
        return "invalid"
    return "error"
