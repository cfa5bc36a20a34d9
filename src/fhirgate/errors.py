"""One exception tree for fhirgate: every error a caller may see derives from FhirgateError.

Messages never carry PHI: they name parameters, resource types and ids, never values taken from records.
"""

from __future__ import annotations


class FhirgateError(Exception):
    """Base of every fhirgate error; `code` is a stable machine-readable label."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(FhirgateError):
    """A caller-supplied value is malformed; names the parameter and what is allowed."""

    code = "invalid-input"

    def __init__(self, param: str, problem: str, allowed: str | None = None) -> None:
        text = f"{param}: {problem}"
        if allowed:
            text += f" (allowed: {allowed})"
        super().__init__(text)
        self.param = param
        self.problem = problem
        self.allowed = allowed


class NotFound(FhirgateError):
    """The resource does not exist, or the caller may not know it exists (the two look the same)."""

    code = "not-found"


class AccessDenied(FhirgateError):
    """The principal lacks the scope or policy grant for the request."""

    code = "forbidden"

    def __init__(self, message: str, *, reason: str, required_scope: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.required_scope = required_scope


class AuthenticationError(FhirgateError):
    """A bearer token is missing, malformed, expired, or not issued for this server."""

    code = "unauthenticated"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class ValidationFailed(FhirgateError):
    """A FHIR resource or bundle does not conform; `location` names the entry or element."""

    code = "invalid-resource"

    def __init__(self, message: str, *, location: str | None = None) -> None:
        super().__init__(f"{location}: {message}" if location else message)
        self.location = location


class Conflict(FhirgateError):
    """A write lost a race: the resource changed since the version the caller read."""

    code = "conflict"


class StoreError(FhirgateError):
    """The storage backend failed (I/O, corruption, wrong encryption key)."""

    code = "store-error"


class AuditError(FhirgateError):
    """The audit record could not be written; the request it records must fail with it."""

    code = "audit-error"


class ConfigError(FhirgateError):
    """The data directory or a configuration value is missing or invalid."""

    code = "config-error"


class RateLimited(FhirgateError):
    """A rate limit refused the call; `retry_after` seconds until it can succeed (None: never at this cost)."""

    code = "rate-limited"

    def __init__(self, message: str, *, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InternalError(FhirgateError):
    """An unexpected failure inside a use case; the message carries no detail (details are logged, ids only)."""

    code = "internal-error"
