"""Errors of the upstream FHIR server (and its token endpoint): one `UpstreamError` subtree of FhirgateError.

Every message names the upstream host, the interaction (metadata, read, search, everything, page, token,
discovery) and the resource type (for a read, the requested `Type/id`), and nothing else taken from the
upstream: no body text, no OperationOutcome diagnostics or details (they may carry PHI), no query values.
The only upstream text ever echoed is a vocabulary code checked against its grammar: OperationOutcome
`issue.code` values (FHIR R4 IssueType) and OAuth `error` codes (RFC 6749 §5.2).
"""

from __future__ import annotations

from fhirgate.errors import FhirgateError

__all__ = [
    "UpstreamAuthFailed",
    "UpstreamError",
    "UpstreamForbidden",
    "UpstreamMalformed",
    "UpstreamRateLimited",
    "UpstreamRefused",
    "UpstreamUnavailable",
]


class UpstreamError(FhirgateError):
    """The upstream FHIR server (or its authorization server) failed a request.

    `host` is the upstream host, `interaction` the FHIR interaction or auth step, `resource_type` the
    requested type (None for metadata and token requests) and `status` the HTTP status when there was one.
    """

    code = "upstream-error"

    def __init__(
        self,
        problem: str,
        *,
        host: str,
        interaction: str,
        resource_type: str | None = None,
        resource_id: str | None = None,
        status: int | None = None,
    ) -> None:
        target = interaction
        if resource_type is not None:
            target += f" {resource_type}" + (f"/{resource_id}" if resource_id is not None else "")
        super().__init__(f"upstream {host}: {target}: {problem}")
        self.host = host
        self.interaction = interaction
        self.resource_type = resource_type
        self.status = status


class UpstreamRefused(UpstreamError):
    """The upstream answered with an error status (usually an OperationOutcome); `issue_codes` are its codes."""

    code = "upstream-refused"

    def __init__(
        self,
        problem: str,
        *,
        host: str,
        interaction: str,
        resource_type: str | None = None,
        resource_id: str | None = None,
        status: int | None = None,
        issue_codes: tuple[str, ...] = (),
    ) -> None:
        super().__init__(
            problem,
            host=host,
            interaction=interaction,
            resource_type=resource_type,
            resource_id=resource_id,
            status=status,
        )
        self.issue_codes = issue_codes


class UpstreamAuthFailed(UpstreamError):
    """fhirgate's own credentials were refused (401 after one token refresh, or the token request failed)."""

    code = "upstream-unauthenticated"


class UpstreamForbidden(UpstreamError):
    """The upstream refused fhirgate's client the interaction (HTTP 403): its granted scopes do not cover it."""

    code = "upstream-forbidden"


class UpstreamRateLimited(UpstreamError):
    """The upstream throttled us (429, or 503 with Retry-After) longer than we wait; `retry_after` in seconds."""

    code = "upstream-rate-limited"

    def __init__(
        self,
        problem: str,
        *,
        host: str,
        interaction: str,
        resource_type: str | None = None,
        resource_id: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(
            problem,
            host=host,
            interaction=interaction,
            resource_type=resource_type,
            resource_id=resource_id,
            status=status,
        )
        self.retry_after = retry_after


class UpstreamUnavailable(UpstreamError):
    """The upstream could not be reached, timed out, or answered with a server error (no OperationOutcome)."""

    code = "upstream-unavailable"


class UpstreamMalformed(UpstreamError):
    """The upstream answered with something other than what the interaction must return (or a link we refuse)."""

    code = "upstream-malformed"
