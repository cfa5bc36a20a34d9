"""Upstream failures as fhirgate tool errors: each `UpstreamError` becomes a StoreError (or RateLimited) whose
message says what happened in plain words, so an MCP caller learns why without any upstream text.

The upstream errors (fhirgate.remote.errors) already carry no upstream body text; here they are reworded for
the person behind the MCP client and placed in the project's tree: the MCP edge turns every FhirgateError into
an isError tool result (`<code>: <message>`), and the Gateway's audited path records the failure with its code.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fhirgate.errors import FhirgateError, RateLimited, StoreError
from fhirgate.remote.errors import (
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamForbidden,
    UpstreamMalformed,
    UpstreamRateLimited,
    UpstreamRefused,
    UpstreamUnavailable,
)

__all__ = ["RemoteStoreError", "UpstreamThrottled", "translate", "upstream_errors"]


class RemoteStoreError(StoreError):
    """The upstream FHIR server failed a request the remote store made; `code` is the upstream error's code."""

    def __init__(self, message: str, *, code: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class UpstreamThrottled(RateLimited):
    """The upstream FHIR server is rate limiting fhirgate; `retry_after` seconds when it said (else None)."""

    code = "upstream-rate-limited"


def _where(exc: UpstreamError) -> str:
    """`host: interaction Type[/id]`: what was asked of whom (no upstream text)."""
    text = f"{exc.host}: {exc.interaction}"
    return text + (f" {exc.resource_type}" if exc.resource_type else "")


def _problem(exc: UpstreamError) -> str:
    """The client's own wording of the problem (the message after `upstream <host>: <target>: `)."""
    parts = exc.message.split(": ", 2)
    return parts[2] if len(parts) == 3 else exc.message


def translate(exc: UpstreamError) -> FhirgateError:
    """The tool-facing error for one upstream failure (the message names host and interaction, never values)."""
    where = _where(exc)
    status = f"HTTP {exc.status}" if exc.status is not None else None
    if isinstance(exc, UpstreamRateLimited):
        wait = exc.retry_after
        after = f"retry after {wait:g} s" if wait is not None else "retry later"
        return UpstreamThrottled(f"the upstream FHIR server is rate limiting; {after} ({where})", retry_after=wait)
    if isinstance(exc, UpstreamAuthFailed):
        how = status or "the token request failed"
        message = f"the upstream FHIR server refused fhirgate's credentials ({how}; check [upstream] auth) ({where})"
    elif isinstance(exc, UpstreamForbidden):
        message = f"the upstream FHIR server does not allow fhirgate's client this request ({status}) ({where})"
    elif isinstance(exc, UpstreamUnavailable):
        problem = _problem(exc)
        if "timed out" in problem:
            message = f"upstream timeout: the upstream FHIR server {problem} ({where})"
        elif exc.status is None:
            message = f"the upstream FHIR server is unreachable ({problem}) ({where})"
        else:
            message = f"the upstream FHIR server failed ({status}) ({where})"
    elif isinstance(exc, UpstreamMalformed):
        message = f"upstream returned a malformed answer: {_problem(exc)} ({where})"
    elif isinstance(exc, UpstreamRefused):
        codes = f"; OperationOutcome issue codes: {', '.join(exc.issue_codes)}" if exc.issue_codes else ""
        message = f"the upstream FHIR server refused the request ({status}{codes}) ({where})"
    else:
        message = f"the upstream FHIR server failed: {_problem(exc)} ({where})"
    return RemoteStoreError(message, code=exc.code, status=exc.status)


@contextmanager
def upstream_errors() -> Iterator[None]:
    """Re-raise any UpstreamError inside the block as its tool-facing error (no traceback chain to the caller)."""
    try:
        yield
    except UpstreamError as exc:
        raise translate(exc) from None
