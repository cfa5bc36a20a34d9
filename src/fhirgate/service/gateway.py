"""The Gateway: every use case as one call that plans access, queries the store, authorizes each
resource out, shapes the result and writes exactly one audit record before returning.

No MCP here: the edge (fhirgate.mcp) maps tools to these methods. If the audit record cannot be
written, the use case fails with AuditError and returns nothing (HIPAA 45 CFR 164.312(b)).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from fhirgate.core.fhir.definitions import SUPPORTED_TYPES
from fhirgate.core.policy.access import plan_access
from fhirgate.service import patients, records, resources
from fhirgate.service.analytics import Analytics
from fhirgate.service.auditing import AuditSink, AuditWriter, Trail, run_audited
from fhirgate.service.context import RequestContext
from fhirgate.service.cursor import CursorCodec
from fhirgate.service.guard import Guard
from fhirgate.service.paging import Pager
from fhirgate.service.resources import Services
from fhirgate.store.contract import FhirStore

log = logging.getLogger(__name__)
T = TypeVar("T")


class Gateway:
    """The service layer: one method per use case, each audited exactly once."""

    def __init__(self, store: FhirStore, audit: AuditSink, cursor_secret: bytes) -> None:
        self.store = store
        self._sink = audit
        self.audit = AuditWriter(audit)
        self._env = Services(store, Pager(CursorCodec(cursor_secret)))
        self._analytics: Analytics | None = None
        self._analytics_lock = threading.Lock()

    @property
    def audit_sink(self) -> AuditSink:
        """Where this gateway's audit records go (the AuditLog in production)."""
        return self._sink

    def close(self) -> None:
        """Release the store, the SQL sandbox and the audit log."""
        if self._analytics is not None:
            self._analytics.close()
        self.store.close()
        close = getattr(self._sink, "close", None)
        if callable(close):
            close()

    # -- the one audited execution path -----------------------------------------------------------

    def _run(self, ctx: RequestContext, trail: Trail, body: Callable[[Guard], T]) -> T:
        guard = Guard(ctx.principal)
        return run_audited(self.audit, ctx, trail, lambda: body(guard))

    # -- use cases --------------------------------------------------------------------------------

    def whoami(self, ctx: RequestContext) -> dict[str, Any]:
        """The caller's identity, granted scopes and what they reach (no PHI, no store access)."""
        trail = Trail("whoami", arguments={})

        def body(guard: Guard) -> dict[str, Any]:
            p = guard.principal
            access: list[dict[str, Any]] = []
            for rtype in SUPPORTED_TYPES:
                read, search = plan_access(p, rtype, "r"), plan_access(p, rtype, "s")
                if not (read.allowed or search.allowed):
                    continue
                plan = search if search.allowed else read
                access.append(
                    {
                        "type": rtype,
                        "read": read.allowed,
                        "search": search.allowed,
                        "patient_compartment": plan.compartment,
                        "constrained": not plan.unconstrained,
                    }
                )
            return {
                "subject": p.sub,
                "issuer": p.issuer,
                "client_id": p.client_id,
                "fhir_user": p.fhir_user,
                "patient": p.patient,
                "scopes": list(p.scopes.tokens),
                "rejected_scopes": [{"scope": s, "reason": r} for s, r in p.scopes.rejected],
                "access": access,
            }

        return self._run(ctx, trail, body)

    def find_patients(
        self,
        ctx: RequestContext,
        *,
        filters: Mapping[str, str | None] | None = None,
        active: bool | None = None,
        count: int = 10,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Patients matching demographic filters, paged."""
        given = dict(filters or {})
        trail = Trail("search", arguments={**given, "active": active, "count": count, "cursor": cursor})
        return self._run(
            ctx,
            trail,
            lambda g: patients.find_patients(
                self._env, g, trail, filters=given, active=active, count=count, cursor=cursor
            ),
        )

    def patient_summary(self, ctx: RequestContext, patient_id: str) -> dict[str, Any]:
        """A bounded clinical summary of one patient."""
        trail = Trail("summary", arguments={"patient_id": patient_id})
        return self._run(ctx, trail, lambda g: patients.patient_summary(self._env, g, trail, patient_id=patient_id))

    def search_resources(
        self,
        ctx: RequestContext,
        resource_type: str,
        params: Mapping[str, str | list[str]] | None = None,
        *,
        count: int = 20,
        cursor: str | None = None,
        format: str = "compact",
        elements: Sequence[str] | None = None,
        summary: str | None = None,
    ) -> dict[str, Any]:
        """One page of a FHIR search."""
        args = {
            "resource_type": resource_type,
            "params": params,
            "count": count,
            "cursor": cursor,
            "format": format,
            "elements": elements,
            "summary": summary,
        }
        trail = Trail("search", arguments=args)
        return self._run(
            ctx,
            trail,
            lambda g: resources.search_resources(
                self._env,
                g,
                trail,
                resource_type=resource_type,
                params=params,
                count=count,
                cursor=cursor,
                fmt=format,
                elements=elements,
                summary=summary,
            ),
        )

    def read_resource(
        self, ctx: RequestContext, resource_type: str, id: str, *, format: str = "compact"
    ) -> dict[str, Any]:
        """One resource by id; denied and missing are the same NotFound."""
        trail = Trail("read", balp_kind="read", arguments={"resource_type": resource_type, "id": id, "format": format})
        return self._run(
            ctx,
            trail,
            lambda g: resources.read_resource(self._env, g, trail, resource_type=resource_type, id=id, fmt=format),
        )

    def patient_everything(
        self,
        ctx: RequestContext,
        patient_id: str,
        *,
        types: Sequence[str] | None = None,
        since: str | None = None,
        count: int = 50,
        cursor: str | None = None,
        format: str = "compact",
    ) -> dict[str, Any]:
        """One page of everything in the patient's compartment."""
        args = {
            "patient_id": patient_id,
            "types": types,
            "since": since,
            "count": count,
            "cursor": cursor,
            "format": format,
        }
        trail = Trail("everything", arguments=args)
        return self._run(
            ctx,
            trail,
            lambda g: records.patient_everything(
                self._env,
                g,
                trail,
                patient_id=patient_id,
                types=types,
                since=since,
                count=count,
                cursor=cursor,
                fmt=format,
            ),
        )

    def grep_record(
        self,
        ctx: RequestContext,
        patient_id: str,
        pattern: str,
        *,
        regex: bool = False,
        types: Sequence[str] | None = None,
        max_hits: int = 20,
    ) -> dict[str, Any]:
        """Text search over one patient's record."""
        args = {"patient_id": patient_id, "pattern": pattern, "regex": regex, "types": types, "max_hits": max_hits}
        trail = Trail("grep", arguments=args)
        return self._run(
            ctx,
            trail,
            lambda g: records.grep_record(
                self._env,
                g,
                trail,
                patient_id=patient_id,
                pattern=pattern,
                regex=regex,
                types=types,
                max_hits=max_hits,
            ),
        )

    # -- SQL analytics over the practice views (fhirgate.service.analytics) -------------------------

    @property
    def analytics(self) -> Analytics:
        """The SQL analytics use cases over this gateway's store, built on first use."""
        with self._analytics_lock:
            if self._analytics is None:
                self._analytics = Analytics.for_store(self.store, self.audit, self._env.pager)
            return self._analytics

    def list_views(self, ctx: RequestContext) -> dict[str, Any]:
        """The views the caller may query with SQL, and why others are not available."""
        return self.analytics.list_views(ctx)

    def describe_view(self, ctx: RequestContext, view: str) -> dict[str, Any]:
        """One view's columns and the row restriction in effect for the caller."""
        return self.analytics.describe_view(ctx, view)

    def query_sql(
        self, ctx: RequestContext, sql: str, *, max_rows: int | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        """One page of one read-only SELECT over the caller's views."""
        return self.analytics.query_sql(ctx, sql, max_rows=max_rows, cursor=cursor)

    def run_report(
        self, ctx: RequestContext, name: str, params: Mapping[str, Any] | None = None, *, today: Any = None
    ) -> dict[str, Any]:
        """One predefined practice report run in the SQL sandbox under the caller's policy (service.reports)."""
        from fhirgate.service import reports

        trail = Trail("report", arguments=reports.audit_arguments(name, params))
        return self._run(
            ctx, trail, lambda g: reports.run_report(self.analytics, g.principal, trail, name, params, today=today)
        )
