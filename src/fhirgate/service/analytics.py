"""SQL analytics use cases: list_views, describe_view and query_sql, each audited exactly once.

They follow Gateway._run: plan under the caller's policy, run, write one audit record whatever the
outcome (HIPAA 45 CFR 164.312(b)); no audit, no answer. The record of a query keeps a SHA-256 of the
SQL (never its text: literals may be names), the views it read (as the record's query), the rows
returned, and the patient its rows were confined to when the caller is confined to one.

Governance narrows the rows further through a RowScope (core.policy.rowscope) that the Gateway passes in:
each view's rows exclude the patients and labelled resources the scope withholds (analytics.sql.policy),
and a query's result says what was withheld, with a patient count only when it singles no one out.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from fhirgate.analytics.sql.catalog import ViewInfo
from fhirgate.analytics.sql.deid_views import DeidContext
from fhirgate.analytics.sql.limits import SqlLimits
from fhirgate.analytics.sql.policy import ViewGrant, confined_patients, grant_views
from fhirgate.analytics.sql.sandbox import SqlSandbox
from fhirgate.analytics.views.replica import ViewReplica
from fhirgate.core.policy.rowscope import RowScope
from fhirgate.errors import ConfigError, InvalidInput
from fhirgate.service.auditing import AuditWriter, Trail, run_audited
from fhirgate.service.context import RequestContext
from fhirgate.service.paging import Pager
from fhirgate.store.contract import FhirStore

log = logging.getLogger(__name__)
T = TypeVar("T")
TOOL = "query_sql"
# CMS cell size suppression policy (counts of 1 to 10 are not displayed): a count of excluded patients
# below this could single someone out, so it is reported as "fewer than 11".
SMALL_CELL = 11

DATES_NOTE = (
    "Dates are FHIR text with the record's UTC offset (2025-03-04T09:30:00-05:00). Compare the local date by "
    "prefix: start_time >= '2025-03-03' AND start_time < '2025-03-10' (uses indexes); compare instants with "
    "julianday(start_time) or unixepoch(start_time), which convert to UTC; date(x) gives the UTC date."
)
EXAMPLES = (
    "No-shows per practitioner in a week: SELECT p.family, p.given, count(*) AS no_shows FROM appointment a "
    "JOIN practitioner p ON p.id = a.practitioner_id WHERE a.status = 'noshow' AND a.start_time >= '2025-03-03' "
    "AND a.start_time < '2025-03-10' GROUP BY p.id ORDER BY no_shows DESC",
    "Patients with a diabetes diagnosis (ICD-10 E11): SELECT count(DISTINCT patient_id) FROM condition "
    "WHERE system = 'http://hl7.org/fhir/sid/icd-10-cm' AND code LIKE 'E11%'",
    "Latest HbA1c per patient: SELECT patient_id, max(effective) AS last, value FROM observation "
    "WHERE code = '4548-4' GROUP BY patient_id",
)


def sql_digest(sql: str) -> str:
    """SHA-256 of the SQL text as given: what the audit record keeps instead of the SQL."""
    return hashlib.sha256(sql.encode("utf-8", "surrogatepass")).hexdigest()


DEID_NOTE = (
    "Your role receives de-identified data (HIPAA Safe Harbor, 45 CFR 164.514(b)(2)): ids are pseudonyms stable "
    "for you, dates are years, ages over 89 are '90+', postal codes are ZIP3, names, addresses, contact details "
    "and free text are null; computed counts of 1 to 10 are shown as '<11'. Never try to re-identify anyone."
)


@dataclass(slots=True)
class SqlTrail:
    """The audit trail of one analytics call, plus what its success record reports."""

    trail: Trail
    digest: str | None = None
    rows: int | None = None

    def reason(self, base: str | None) -> str | None:
        parts = [p for p in (base, self.rows is not None and f"rows={self.rows}") if p]
        if self.digest:
            parts.append(f"sql_sha256={self.digest}")
        return "; ".join(str(p) for p in parts) or None


class Analytics:
    """The three SQL use cases over one store's views."""

    def __init__(
        self, sandbox: SqlSandbox, audit: AuditWriter, pager: Pager, *, replica: ViewReplica | None = None
    ) -> None:
        self.sandbox = sandbox
        self.audit = audit
        self.pager = pager
        self.replica = replica

    @classmethod
    def for_store(
        cls,
        store: FhirStore,
        audit: AuditWriter,
        pager: Pager,
        limits: SqlLimits | None = None,
        *,
        replica: Callable[[], ViewReplica] | None = None,
    ) -> Analytics:
        """Analytics over the SQLite store's file, or over the views replica `replica` opens (a PostgreSQL store).

        The replica catches up with its source before every call reads the catalog (SqlSandbox before_read).
        """
        reopen = getattr(store, "reopen_args", None)
        if callable(reopen):
            path, key = reopen()
            return cls(SqlSandbox(path, key=key, limits=limits), audit, pager)
        if replica is None:
            raise ConfigError("SQL analytics needs the SQLite store or a views replica")
        views = replica()
        try:
            sandbox = SqlSandbox(
                views.path, key=views.store.reopen_args()[1], limits=limits, before_read=views.catch_up
            )
        except BaseException:
            views.close()
            raise
        return cls(sandbox, audit, pager, replica=views)

    def close(self) -> None:
        """Close the sandbox connections (and the replica)."""
        try:
            self.sandbox.close()
        finally:
            if self.replica is not None:
                self.replica.close()

    # -- the audited execution path (as Gateway._run) ------------------------------------------------

    def _run(self, ctx: RequestContext, st: SqlTrail, body: Callable[[], T]) -> T:
        return run_audited(self.audit, ctx, st.trail, body, reason=st.reason)

    def grants(
        self, ctx: RequestContext, scope: RowScope | None = None
    ) -> tuple[dict[str, ViewInfo], dict[str, ViewGrant]]:
        """The views that exist and the caller's grant for each, under its scopes and `scope` (governance)."""
        catalog = self.sandbox.catalog()
        labels = scope.withheld_labels if scope is not None else frozenset()
        facts = self.sandbox.facts(labels)
        return catalog, grant_views(ctx.principal, catalog, scope, facts=facts)

    # -- use cases -----------------------------------------------------------------------------------

    def list_views(self, ctx: RequestContext, *, scope: RowScope | None = None) -> dict[str, Any]:
        """Every view, whether the caller may query it (and why not), its grain and columns."""
        st = SqlTrail(Trail("sql.views", arguments={}))

        def body() -> dict[str, Any]:
            catalog, grants = self.grants(ctx, scope)
            views = [_summary(info, grants[name]) for name, info in catalog.items()]
            return {
                "views": views,
                "dialect": "SQLite 3 (one SELECT per call; WITH, JOIN, GROUP BY, window and JSON functions work)",
                "dates": DATES_NOTE,
                "examples": list(EXAMPLES),
                "limits": self.sandbox.limits.as_dict(),
            }

        return self._run(ctx, st, body)

    def describe_view(self, ctx: RequestContext, view: str, *, scope: RowScope | None = None) -> dict[str, Any]:
        """One view's columns (types, descriptions) and the row restriction in effect for the caller."""
        st = SqlTrail(Trail("sql.describe", arguments={"view": view}))

        def body() -> dict[str, Any]:
            catalog, grants = self.grants(ctx, scope)
            if not isinstance(view, str) or view not in catalog:
                raise InvalidInput("view", "unknown view", ", ".join(sorted(catalog)) or "no views are materialized")
            info, grant = catalog[view], grants[view]
            st.trail.query_params = [view]
            return {
                **_summary(info, grant),
                "columns": [c.as_dict() for c in info.columns if c.name not in grant.hidden_columns],
                "restriction": _restriction(grant),
                "dates": DATES_NOTE,
            }

        return self._run(ctx, st, body)

    def query_sql(
        self,
        ctx: RequestContext,
        sql: str,
        *,
        max_rows: int | None = None,
        cursor: str | None = None,
        scope: RowScope | None = None,
        deid: DeidContext | None = None,
    ) -> dict[str, Any]:
        """One page of one SELECT's result over the caller's views; next pages by cursor with the same SQL.

        With `deid` (a de-identified role) every view column is Safe Harbor de-identified and computed small
        counts are shown as "<11" (analytics.sql.deid_views).
        """
        limits = self.sandbox.limits
        digest = sql_digest(sql) if isinstance(sql, str) else None
        rows_arg = limits.default_rows if max_rows is None else max_rows
        st = SqlTrail(Trail("sql.query", arguments={"sql_sha256": digest, "max_rows": rows_arg}), digest=digest)

        def body() -> dict[str, Any]:
            checked = limits.check_sql(sql)
            rows_wanted = limits.check_rows(rows_arg)
            bound = {"sql": checked, "max_rows": rows_wanted}
            offset = self.pager.offset(ctx.principal, TOOL, bound, cursor)
            catalog, grants = self.grants(ctx, scope)
            touched: set[str] = set()
            try:
                page = self.sandbox.query(
                    grants, checked, offset=offset, max_rows=rows_wanted, touched=touched, deid=deid
                )
            finally:
                # Even a refused query records the views it reached and whose rows they were confined to.
                st.trail.query_params = sorted(touched)
                st.trail.patients = confined_patients(grants, touched)
            st.rows = len(page.rows)
            next_cursor = self.pager.next_cursor(ctx.principal, TOOL, bound, page.next_offset)
            restricted = sorted({g.patient for n, g in grants.items() if n in page.views and g.patient})
            out: dict[str, Any] = {
                "columns": page.columns,
                "rows": page.rows,
                "views": list(page.views),
                "confined_to_patient": restricted[0] if len(restricted) == 1 else None,
                "page": {
                    "offset": offset,
                    "returned": len(page.rows),
                    "next_cursor": next_cursor,
                    "note": (
                        f"Stopped at the bound of {limits.max_offset + limits.max_rows} rows: aggregate "
                        "(GROUP BY) or filter instead of paging further."
                    )
                    if page.bounded
                    else None,
                },
            }
            held = withheld(scope, catalog, page.views)
            if held is not None:
                out["withheld"] = held
            if deid is not None:
                out["deidentified"] = {
                    "suppressed_cells": page.suppressed,
                    "note": DEID_NOTE,
                }
            return out

        return self._run(ctx, st, body)


def _summary(info: ViewInfo, grant: ViewGrant) -> dict[str, Any]:
    out = {
        "name": info.name,
        "title": info.title,
        "grain": info.grain,
        "resource_type": info.resource_type,
        "column_names": [c for c in info.column_names if c not in grant.hidden_columns],
        "available": grant.allowed,
        "access": grant.detail,
        "required_scope": None if grant.allowed else grant.required_scope,
    }
    if grant.hidden_columns:
        out["omitted_columns"] = {
            "names": list(grant.hidden_columns),
            "note": "Columns of elements your role does not receive (minimum necessary, 45 CFR 164.502(b)).",
        }
    return out


def _restriction(grant: ViewGrant) -> dict[str, Any]:
    if not grant.allowed or grant.rows is None:
        return {"kind": "unavailable", "detail": grant.detail, "patient": None}
    if grant.rows.patient is not None:
        return {"kind": "patient", "detail": grant.rows.describe(), "patient": grant.rows.patient}
    kind = "governed" if grant.rows.governed else "none"
    return {"kind": kind, "detail": grant.rows.describe(), "patient": None}


def withheld(scope: RowScope | None, catalog: Mapping[str, ViewInfo], views: Iterable[str]) -> dict[str, Any] | None:
    """What governance withheld from a result over `views` (None when the scope restricts nothing).

    The count of patients excluded by consent or opt-out is shown only from 11 up (CMS cell size
    suppression policy: 1 to 10 could single someone out); care-team limits are described, not counted.
    """
    if scope is None or scope.unrestricted:
        return None
    types = {t for v in views if v in catalog for t in (catalog[v].resource_type, *catalog[v].also_reads)}
    patients = frozenset[str]().union(*(scope.excluded_for(t) for t in types)) if types else scope.excluded_patients
    count: int | str = len(patients) if len(patients) == 0 or len(patients) >= SMALL_CELL else "fewer than 11"
    notes = []
    if scope.only_patients is not None:
        notes.append("Only the rows of patients you have a care relationship with are included.")
    if patients:
        notes.append(
            "Rows of patients who opted out of AI access, or whose consent denies you this data, are left out "
            "of every view and count."
        )
    if scope.withheld_labels:
        notes.append(f"Resources labelled {', '.join(sorted(scope.withheld_labels))} are withheld and not counted.")
    notes.append("Patient counts of 1 to 10 are shown as 'fewer than 11' (CMS cell size suppression policy).")
    return {"patients_excluded": count, "labels": sorted(scope.withheld_labels), "note": " ".join(notes)}
