"""Writing the one audit record a request gets, and what a use case collects for it as it runs.

HIPAA 45 CFR 164.312(b) (audit controls): every access to PHI is recorded, allowed or refused. A
record is written BEFORE the response leaves; if the write fails, the request fails with AuditError
(no audit, no data). Records keep ids of patients and resources touched, never PHI values.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from fhirgate.audit.record import AuditRecord
from fhirgate.errors import (
    AccessDenied,
    AuditError,
    FhirgateError,
    InternalError,
    InvalidInput,
    NotFound,
    RateLimited,
)
from fhirgate.service.context import RequestContext

log = logging.getLogger(__name__)
T = TypeVar("T")


class AuditSink(Protocol):
    """Where records go (fhirgate.audit.log.AuditLog satisfies it)."""

    def append(self, record: AuditRecord) -> int: ...


@dataclass(slots=True)
class Trail:
    """What one use case touched, filled in while it runs and written as one record at the end."""

    interaction: str
    balp_kind: str = "query"
    arguments: Mapping[str, Any] = field(default_factory=dict)
    resource_type: str | None = None
    query_params: list[str] = field(default_factory=list)
    patients: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    # Set when a refusal is reported to the caller as not-found (reads by id): the record still says why.
    masked_denial: str | None = None
    # Safe writes: the proposal the use case made or acted on, and who approved/rejected/confirmed it.
    proposal: str | None = None
    decider: str | None = None

    def touch(self, ref: str, patients: tuple[str, ...] | list[str]) -> None:
        """Note one resource returned and the patients whose compartment holds it."""
        self.references.append(ref)
        self.patients.extend(patients)


class AuditWriter:
    """Builds AuditRecords from a RequestContext and appends them; one record per request, enforced."""

    def __init__(self, sink: AuditSink) -> None:
        self._sink = sink
        self._lock = threading.Lock()

    def write(
        self,
        ctx: RequestContext,
        *,
        outcome: str,
        interaction: str,
        balp_kind: str = "query",
        reason: str | None = None,
        arguments: Mapping[str, Any] | None = None,
        resource_type: str | None = None,
        query_params: list[str] | None = None,
        patients: list[str] | tuple[str, ...] = (),
        references: list[str] | tuple[str, ...] = (),
        proposal: str | None = None,
        decider: str | None = None,
    ) -> None:
        """Append the request's record; raises AuditError if it cannot be written or was written already."""
        if ctx.audited:
            raise AuditError(f"request {ctx.request_id} already has its audit record")
        self._append(
            lambda: AuditRecord.new(
                request_id=ctx.request_id,
                transport=ctx.transport,
                method=ctx.method,
                name=ctx.name,
                principal=ctx.principal,
                interaction=interaction,
                balp_kind=balp_kind,
                outcome=outcome,
                arguments=arguments,
                resource_type=resource_type,
                query_params=query_params,
                patients=patients,
                references=references,
                reason=reason,
                latency_ms=ctx.elapsed_ms(),
                client_address=ctx.client_address,
                role=ctx.role,
                purpose=ctx.purpose,
                break_glass=ctx.break_glass,
                proposal=proposal,
                decider=decider,
            )
        )
        ctx.audited = True

    def _append(self, build: Callable[[], AuditRecord]) -> None:
        """Build one record and append it; any failure (a bad field, the sink) becomes AuditError, no detail."""
        try:
            record = build()
            with self._lock:
                self._sink.append(record)
        except AuditError:
            raise
        except Exception as exc:
            raise AuditError(f"audit record could not be written ({type(exc).__name__})") from None

    def write_trail(self, ctx: RequestContext, trail: Trail, *, outcome: str, reason: str | None) -> None:
        """Append the record for a use case from its Trail."""
        self.write(
            ctx,
            outcome=outcome,
            interaction=trail.interaction,
            balp_kind=trail.balp_kind,
            reason=reason,
            arguments=trail.arguments,
            resource_type=trail.resource_type,
            query_params=trail.query_params,
            patients=trail.patients,
            references=trail.references,
            proposal=trail.proposal,
            decider=trail.decider,
        )

    def write_unauthenticated(
        self,
        *,
        request_id: str,
        transport: str,
        method: str,
        outcome: str,
        reason: str,
        client_address: str | None,
        latency_ms: float,
        name: str | None = None,
    ) -> None:
        """Append the record for a request refused or answered before any principal was established."""
        self._append(
            lambda: AuditRecord.new(
                request_id=request_id,
                transport=transport,
                method=method,
                name=name,
                interaction=method,
                balp_kind="query",
                outcome=outcome,
                reason=reason,
                latency_ms=latency_ms,
                client_address=client_address,
            )
        )

    def write_operator(
        self,
        *,
        request_id: str,
        interaction: str,
        balp_kind: str,
        outcome: str,
        decider: str,
        proposal: str | None,
        reason: str | None = None,
        resource_type: str | None = None,
        patients: Iterable[str] = (),
        references: Iterable[str] = (),
        arguments: Mapping[str, Any] | None = None,
        latency_ms: float = 0.0,
    ) -> None:
        """Append the record of an action an operator took at the CLI (approve, reject, confirm a proposal).

        No principal: the operator is the `decider` (transport and method "cli", name = interaction), so
        every decision on a write is audited whether it came through a client or the console.
        """
        self._append(
            lambda: AuditRecord.new(
                request_id=request_id,
                transport="cli",
                method="cli",
                name=interaction,
                interaction=interaction,
                balp_kind=balp_kind,
                outcome=outcome,
                arguments=arguments,
                resource_type=resource_type,
                patients=patients,
                references=references,
                reason=reason,
                latency_ms=latency_ms,
                proposal=proposal,
                decider=decider,
            )
        )


def classify(exc: FhirgateError, trail: Trail) -> tuple[str, str | None]:
    """The audit outcome and reason for a failed use case."""
    if isinstance(exc, NotFound):
        return ("denied", trail.masked_denial) if trail.masked_denial else ("not-found", None)
    if isinstance(exc, AccessDenied):
        return "denied", exc.reason
    if isinstance(exc, RateLimited):
        return "denied", "rate_limited"
    if isinstance(exc, InvalidInput):
        return "invalid", f"invalid.{exc.param}"[:120]
    return "error", exc.code


def run_audited(
    writer: AuditWriter,
    ctx: RequestContext,
    trail: Trail,
    body: Callable[[], T],
    *,
    reason: Callable[[str | None], str | None] = lambda r: r,
) -> T:
    """Run one use case and write its one audit record, whatever the outcome, before returning or raising.

    Unexpected exceptions become InternalError (no detail to the caller; the type is logged with the request
    id). `reason` lets a use case add to the recorded reason (e.g. a row count or a query digest).
    """
    try:
        result = body()
    except AuditError:
        raise
    except FhirgateError as exc:
        outcome, why = classify(exc, trail)
        writer.write_trail(ctx, trail, outcome=outcome, reason=reason(why))
        raise
    except Exception as exc:
        log.error("request %s (%s) failed: %s", ctx.request_id, ctx.name, type(exc).__name__)
        log.debug("traceback for request %s", ctx.request_id, exc_info=True)
        writer.write_trail(ctx, trail, outcome="error", reason=reason(f"internal.{type(exc).__name__}"))
        raise InternalError(f"internal error (request {ctx.request_id})") from None
    writer.write_trail(ctx, trail, outcome="success", reason=reason(None))
    return result
