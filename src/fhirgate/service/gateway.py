"""The Gateway: every use case as one call that plans access, queries the store, authorizes each
resource out, shapes the result and writes exactly one audit record before returning.

No MCP here: the edge (fhirgate.mcp) maps tools to these methods. If the audit record cannot be
written, the use case fails with AuditError and returns nothing (HIPAA 45 CFR 164.312(b)).
"""

from __future__ import annotations

import functools
import hmac
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from fhirgate.analytics.sql.deid_views import DeidContext
from fhirgate.analytics.views.replica import ViewReplica
from fhirgate.audit.chain import AuditStore
from fhirgate.audit.disclosures import accounting
from fhirgate.core.fhir.definitions import SUPPORTED_TYPES
from fhirgate.core.policy.access import plan_access
from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.pseudonym import Pseudonymizer
from fhirgate.core.policy.rowscope import RowScope
from fhirgate.core.policy.rules import KNOWN_TOOLS, WRITE_TOOLS
from fhirgate.errors import AccessDenied, FhirgateError, StoreError
from fhirgate.policy_loader import load_policy
from fhirgate.service import patients, records, resources
from fhirgate.service.analytics import Analytics
from fhirgate.service.auditing import AuditSink, AuditWriter, Trail, classify, run_audited
from fhirgate.service.context import RequestContext
from fhirgate.service.cursor import CursorCodec
from fhirgate.service.gateway_fhir import FhirApiUseCases
from fhirgate.service.gateway_writes import WriteUseCases
from fhirgate.service.governance import Governance, Standing
from fhirgate.service.guard import Guard
from fhirgate.service.paging import Pager
from fhirgate.service.resources import Services
from fhirgate.service.writes import WriteDesk
from fhirgate.store.contract import FhirStore
from fhirgate.terminology.lookup import Terminology
from fhirgate.writes.proposal_rules import Proposals

log = logging.getLogger(__name__)
T = TypeVar("T")
ANALYTICS_TOOLS = frozenset({"list_views", "describe_view", "query_sql", "run_report"})


def unavailable_tools(store: FhirStore, *, views_replica: bool = False) -> dict[str, str]:
    """Tools this store cannot serve, each with why: SQL views need the SQLite store or, for PostgreSQL, a views
    replica (not a remote FHIR server, yet), and a remote FHIR backend (`embedded = False`) takes no writes."""
    out: dict[str, str] = {}
    if not callable(getattr(store, "reopen_args", None)) and not views_replica:
        out.update(
            dict.fromkeys(
                ANALYTICS_TOOLS, "SQL views and reports need fhirgate's own store (a data directory or PostgreSQL)"
            )
        )
    if getattr(store, "embedded", True) is False:
        out.update(dict.fromkeys(WRITE_TOOLS, "a remote FHIR backend is read-only (writes need fhirgate's own store)"))
    return out


class Gateway(WriteUseCases, FhirApiUseCases):
    """The service layer: one method per use case, each audited exactly once."""

    def __init__(
        self,
        store: FhirStore,
        audit: AuditSink,
        cursor_secret: bytes,
        *,
        governance: Governance | None = None,
        pseudonym_secret: bytes | None = None,
        proposals: Proposals | None = None,
        request_state_key: bytes | None = None,
        views_replica: Callable[[], ViewReplica] | None = None,
    ) -> None:
        """`governance` applies a policy file; by default the shipped default policy (docs/policy.md).
        `pseudonym_secret` keys de-identified ids (default: derived from the cursor secret); `proposals`
        holds write proposals (without one, write tools answer that this server cannot take writes);
        `request_state_key` seals write confirmations' MCP requestState (shared by every worker); `views_replica`
        opens the analytics views of a store that keeps none itself (PostgreSQL), on first use."""
        self.store = store
        self._pseudonym_key = pseudonym_secret or hmac.new(cursor_secret, b"fhirgate pseudonyms", "sha256").digest()
        self._sink = audit
        self.audit = AuditWriter(audit)
        self.governance = governance or Governance(load_policy(None), store)
        self._env = Services(store, Pager(CursorCodec(cursor_secret)))
        self._analytics: Analytics | None = None
        self._terminology: Terminology | None = None
        self._analytics_lock = threading.Lock()
        self.writes = WriteDesk(store, proposals)
        self.request_state_key = request_state_key
        self._views_replica = views_replica

    @functools.cached_property
    def unavailable_tools(self) -> dict[str, str]:
        """Tools this backend cannot serve (hidden from tools/list, refused with the reason when called)."""
        return unavailable_tools(self.store, views_replica=self._views_replica is not None)

    @property
    def audit_sink(self) -> AuditSink:
        """Where this gateway's audit records go (the AuditLog in production)."""
        return self._sink

    def close(self) -> None:
        """Release the store, the SQL sandbox, the rate-limit store and the audit log."""
        if self._analytics is not None:
            self._analytics.close()
        self.governance.close()
        self.writes.close()
        self.store.close()
        close = getattr(self._sink, "close", None)
        if callable(close):
            close()

    # -- the one audited execution path -----------------------------------------------------------

    def _standing(self, ctx: RequestContext, tool: str) -> Standing:
        """Place the principal under the policy for one call of `tool`; AccessDenied says why not."""
        if tool in self.unavailable_tools:
            raise StoreError(f"{tool} is not available on this server: {self.unavailable_tools[tool]}")
        standing = self.governance.standing(ctx.principal)
        ctx.role, ctx.purpose, ctx.break_glass = standing.role.name, standing.purpose, standing.break_glass
        allowed = self.governance.tool_decision(standing.role, tool)
        if not allowed.allowed:
            raise AccessDenied(allowed.detail, reason=allowed.reason)
        self.governance.charge(ctx.principal, standing.role, tool)
        return standing

    def _run(self, ctx: RequestContext, trail: Trail, body: Callable[[Guard], T], tool: str) -> T:
        def governed() -> T:
            return body(Guard(ctx.principal, self._standing(ctx, tool)))

        return run_audited(self.audit, ctx, trail, governed)

    def visible_tools(self, principal: Principal) -> frozenset[str] | None:
        """The tools the principal's role may call (None: every tool, or no role to go by: calls will say why)."""
        try:
            role = self.governance.role_of(principal)
        except AccessDenied:
            return None
        allowed = (t for t in KNOWN_TOOLS if t not in self.unavailable_tools)
        return frozenset(t for t in allowed if self.governance.tool_decision(role, t).allowed)

    def _scope(self, guard: Guard) -> RowScope | None:
        """The row scope of the guard's standing (None without one)."""
        return self.governance.row_scope(guard.standing) if guard.standing is not None else None

    def _admit(self, ctx: RequestContext, tool: str, interaction: str) -> Standing:
        """The standing for a use case that writes its own audit record; a refusal is audited here."""
        try:
            return self._standing(ctx, tool)
        except FhirgateError as exc:
            trail = Trail(interaction, arguments={})
            outcome, why = classify(exc, trail)
            self.audit.write_trail(ctx, trail, outcome=outcome, reason=why)
            raise

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
                "access": [a for a in access if guard.may(a["type"], "r") or guard.may(a["type"], "s")],
                "governance": guard.standing.describe() if guard.standing is not None else None,
            }

        return self._run(ctx, trail, body, "whoami")

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
            "find_patients",
        )

    def patient_summary(self, ctx: RequestContext, patient_id: str) -> dict[str, Any]:
        """A bounded clinical summary of one patient."""
        trail = Trail("summary", arguments={"patient_id": patient_id})
        return self._run(
            ctx,
            trail,
            lambda g: patients.patient_summary(self._env, g, trail, patient_id=patient_id),
            "patient_summary",
        )

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
            "search_resources",
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
            "read_resource",
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
            "patient_everything",
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
            "grep_record",
        )

    # -- SQL analytics over the practice views (fhirgate.service.analytics) -------------------------

    @property
    def analytics(self) -> Analytics:
        """The SQL analytics use cases over this gateway's store, built on first use."""
        with self._analytics_lock:
            if self._analytics is None:
                self._analytics = Analytics.for_store(
                    self.store, self.audit, self._env.pager, replica=self._views_replica
                )
            return self._analytics

    def list_views(self, ctx: RequestContext) -> dict[str, Any]:
        """The views the caller may query with SQL, and why others are not available."""
        standing = self._admit(ctx, "list_views", "views")
        return self.analytics.list_views(ctx, scope=self.governance.row_scope(standing))

    def describe_view(self, ctx: RequestContext, view: str) -> dict[str, Any]:
        """One view's columns and the row restriction in effect for the caller."""
        standing = self._admit(ctx, "describe_view", "views")
        return self.analytics.describe_view(ctx, view, scope=self.governance.row_scope(standing))

    def query_sql(
        self, ctx: RequestContext, sql: str, *, max_rows: int | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        """One page of one read-only SELECT over the caller's views."""
        standing = self._admit(ctx, "query_sql", "sql")
        scope = self.governance.row_scope(standing)
        deid = None
        if standing.role.deidentify:  # Safe Harbor views, pseudonyms keyed per principal
            deid = DeidContext(Pseudonymizer(self._pseudonym_key, ctx.principal.subject_key), standing.today)
        return self.analytics.query_sql(ctx, sql, max_rows=max_rows, cursor=cursor, scope=scope, deid=deid)

    # -- governance -------------------------------------------------------------------------------

    def break_glass(self, ctx: RequestContext, reason: str) -> dict[str, Any]:
        """Open emergency access for the principal's role's bounded time; the grant and its use are audited."""
        trail = Trail("break-glass", arguments={"reason": reason})

        def body(guard: Guard) -> dict[str, Any]:
            role, until = self.governance.break_glass(ctx.principal, reason)
            ctx.break_glass = True
            expires = datetime.fromtimestamp(until, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
            return {
                "break_glass": True,
                "role": role.name,
                "expires": expires,
                "opens": {
                    "care_team": role.access == "care-team",
                    "sensitive_labels": sorted(role.break_glass_sensitive),
                },
                "still_applies": "Consent (opt-outs and deny provisions), your scopes and your role's types.",
                "note": "Every request until it expires is flagged break-glass in the audit log (purpose BTG) for "
                "review by the practice's privacy officer.",
            }

        return self._run(ctx, trail, body, "break_glass")

    def audit_disclosures(
        self, ctx: RequestContext, patient_id: str, *, since: str | None = None, until: str | None = None
    ) -> dict[str, Any]:
        """The accounting of disclosures of one patient's data (45 CFR 164.528), from the audit log."""
        trail = Trail("disclosures", arguments={"patient_id": patient_id, "since": since, "until": until})

        def body(guard: Guard) -> dict[str, Any]:
            resources.check_id(patient_id, "patient_id")
            if not isinstance(self._sink, AuditStore):
                raise StoreError("the accounting of disclosures needs this server's audit log")
            trail.patients = [patient_id]
            trail.resource_type = "Patient"
            return accounting(self._sink, patient_id, since, until)

        return self._run(ctx, trail, body, "audit_disclosures")

    def run_report(
        self, ctx: RequestContext, name: str, params: Mapping[str, Any] | None = None, *, today: Any = None
    ) -> dict[str, Any]:
        """One predefined practice report run in the SQL sandbox under the caller's policy (service.reports)."""
        from fhirgate.service import reports

        trail = Trail("report", arguments=reports.audit_arguments(name, params))
        return self._run(
            ctx,
            trail,
            lambda g: reports.run_report(
                self.analytics, g.principal, trail, name, params, today=today, scope=self._scope(g)
            ),
            "run_report",
        )

    # -- terminology (fhirgate.terminology) -------------------------------------------------------

    @property
    def terminology(self) -> Terminology:
        """The code lookup over this gateway's store (its seen codes), built on first use."""
        with self._analytics_lock:
            if self._terminology is None:
                self._terminology = Terminology.for_store(self.store)
            return self._terminology

    def lookup_code(
        self,
        ctx: RequestContext,
        *,
        text: str | None = None,
        code: str | None = None,
        system: str | None = None,
        limit: int = 10,
    ) -> dict[str, Any]:
        """Clinical words -> ranked candidate codes, or a code -> its display and ICD-10-CM hierarchy (no patient)."""
        from fhirgate.service import terminology

        trail = Trail("lookup", arguments={"text": text, "code": code, "system": system, "limit": limit})
        return self._run(
            ctx,
            trail,
            lambda g: terminology.lookup_code(self.terminology, g, text=text, code=code, system=system, limit=limit),
            "lookup_code",
        )
