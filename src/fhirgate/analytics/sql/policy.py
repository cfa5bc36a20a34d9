"""Which views a principal may query with SQL, and which rows of each: pure decisions with reasons.

A view is offered when the principal may SEARCH the view's FHIR resource type (`plan_access(..., 's')`,
SMART App Launch 2.x "Scopes for requesting clinical data"). Rows are then narrowed like a search:
- practice-wide grant (user/ or system/ scope, fhirUser not a Patient): every row;
- grant confined to one patient's compartment (patient/ scope with launch context, or a fhirUser that
  is a Patient): only rows whose patient column is that patient (FHIR R4 CompartmentDefinition/patient);
  a view without such a column is not offered (fail closed: e.g. `practitioner` for a patient token,
  matching a patient-compartment search of Practitioner, which returns nothing);
- grant narrowed by SMART v2 constraints (`?category=...`): the view is not offered, since a view row
  cannot be tested against a search-parameter constraint; search_resources honours such scopes.

Governance then narrows the rows further when a RowScope is given (core.policy.rowscope): rows of
patients outside `only_patients` or excluded for the view's resource types go (by the patient column;
the id for Patient-grained views), and resources carrying a withheld security label go (by the hidden
`_rid`, against the store's `_security` token index). A view of patient data with no patient column is
then not offered (`governance.not_in_view`); views of types outside every Patient compartment (FHIR R4
CompartmentDefinition/patient: Practitioner, Organization, Location...) hold no patient's rows and keep
them. The derived tables have no `_rid`: they are offered only when what they summarize matches the
scope (StoreFacts): patient_activity is filtered by patient; appointment_daily and billing_daily (no
patient column) only when the scope excludes, for every type they summarize (Appointment; Claim and
Invoice), exactly the opted-out patients the table already leaves out, with no care-team restriction.
All leave out every resource carrying a label in LEFT_OUT_LABELS (the default sensitive set; analytics.views.summary),
so a derived table is offered only when, among the label codes present on the resource types it
summarizes, those it leaves out are exactly those withheld from the caller:
    present & LEFT_OUT_LABELS == present & scope.withheld_labels
(`governance.labels_in_summary` otherwise: a caller who may see a present sensitive label, or from whom
a label outside that set is withheld, reads the views instead). Unknown facts (no StoreFacts, a derived
table of an older version, presence not looked up for every code needed) fail closed. Ids and label
codes are validated before they are inlined into SQL.
"""

# ruff: noqa: S608 - only validated FHIR ids, label codes and type names are inlined into SQL.

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache

from fhirgate.analytics.sql.authorizer import LABELLED_PREFIX as AUTH_LABELLED_PREFIX
from fhirgate.analytics.sql.catalog import ACTIVITY, BILLING, DAILY, ViewInfo
from fhirgate.analytics.views.summary import LEFT_OUT_LABELS
from fhirgate.core.fhir.definitions import compartment_params
from fhirgate.core.policy.access import plan_access
from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.rowscope import RowScope
from fhirgate.errors import FhirgateError, InvalidInput

# FHIR R4 §2.24.0.1 "id": the only shape of patient id ever inlined into SQL.
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
# The only shape of security label code ever inlined into SQL (v3 codes: R, PSY, 42CFRPart2, ...).
LABEL_CODE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_TYPE_NAME = re.compile(r"[A-Z][A-Za-z]{0,63}")
_PATIENT_KEY = "getReferenceKey(Patient)"
# The element a column's FHIRPath starts from (`name.first().family` -> name); functions (getResourceKey) are
# not elements and never hidden.
_ROOT = re.compile(r"([A-Za-z][A-Za-z0-9]*)(?![A-Za-z0-9]*\()")
_RESOURCE_KEY = ("getResourceKey()", "id")
# Derived tables (no `_rid`): a withheld label cannot be filtered out of their rows; they leave
# LEFT_OUT_LABELS out when built, and are offered only when that matches the caller (see the docstring).
DERIVED = frozenset({ACTIVITY.name, DAILY.name, BILLING.name})
# The derived tables without a patient column (per-day rollups) and what their rows count, for the refusal.
ROLLUPS = {DAILY.name: ("appointments", "appointment"), BILLING.name: ("line items", "claim_line and invoice_line")}


@dataclass(frozen=True, slots=True)
class StoreFacts:
    """What the derived tables hold, read from the store per call, that a RowScope is checked against.

    `rollup_optouts`: the patients appointment_daily leaves out (None: unknown); `billing_optouts`: those
    billing_daily leaves out (None: unknown; the same consent query, but read for its own table, which may
    be absent or of another version). `labels`: per resource
    type a derived table summarizes, the label codes among `looked_up` that some resource of it carries.
    `looked_up`: the codes whose presence was checked (LEFT_OUT_LABELS and the caller's withheld labels).
    `current`: the derived tables that exist at the current version (leaving LEFT_OUT_LABELS out).
    """

    rollup_optouts: frozenset[str] | None = None
    labels: Mapping[str, frozenset[str]] = field(default_factory=dict)
    looked_up: frozenset[str] = frozenset()
    current: frozenset[str] = frozenset()
    billing_optouts: frozenset[str] | None = None

    def optouts_of(self, view: str) -> frozenset[str] | None:
        """The patients the rollup `view` (appointment_daily, billing_daily) leaves out (None: unknown)."""
        return {DAILY.name: self.rollup_optouts, BILLING.name: self.billing_optouts}.get(view)

    def present(self, types: Iterable[str]) -> frozenset[str]:
        """The label codes (of those looked up) carried by some resource of any of `types`."""
        return frozenset[str]().union(*(self.labels.get(t, frozenset()) for t in types))


def summarized_types(info: ViewInfo) -> tuple[str, ...]:
    """The resource types whose resources a derived table summarizes (and so whose labels it must leave out):
    its own type and those it also reads; a Patient-grained summary's rows are keyed by patient, not read
    from Patient resources, so only the types it also reads."""
    own = () if info.resource_type == "Patient" and info.also_reads else (info.resource_type,)
    return tuple(dict.fromkeys((*own, *info.also_reads)))


# The resource types the derived tables summarize, whose labels StoreFacts looks up.
DERIVED_TYPES = frozenset(t for info in (ACTIVITY, DAILY, BILLING) for t in summarized_types(info))


def _sql_ids(ids: frozenset[str], param: str) -> str:
    """A SQL list of validated FHIR ids, sorted (so equal sets give equal SQL and signatures)."""
    for value in ids:
        if not FHIR_ID.fullmatch(value):  # checked when built; re-checked before inlining
            raise InvalidInput(param, "not a FHIR id", "[A-Za-z0-9-.]{1,64}")
    return ", ".join(f"'{v}'" for v in sorted(ids))


LABELLED_PREFIX = AUTH_LABELLED_PREFIX


def labelled_table(rtype: str, labels: frozenset[str]) -> str:
    """The temp table holding the `resources.rid`s of `rtype` that carry any of `labels` (sandbox keeps it)."""
    digest = hashlib.sha256(",".join(sorted(labels)).encode()).hexdigest()[:12]
    return f"{LABELLED_PREFIX}{rtype.lower()}_{digest}"


def labelled_select(rtype: str, labels: frozenset[str]) -> str:
    """The query that fills labelled_table(rtype, labels) from the store's `_security` index."""
    return (
        "SELECT DISTINCT t.rid FROM main.ix_token t WHERE t.pid IN (SELECT pid FROM main.params "
        f"WHERE code = '_security' AND rtype = '{rtype}') AND t.code IN ({_sql_labels(labels)})"
    )


def _sql_labels(labels: frozenset[str]) -> str:
    for value in labels:
        if not LABEL_CODE.fullmatch(value):
            raise InvalidInput("withheld_labels", "not a security label code", "[A-Za-z0-9._-]{1,64}")
    return ", ".join(f"'{v}'" for v in sorted(labels))


@dataclass(frozen=True, slots=True)
class RowFilter:
    """The rows of a view a principal sees: all, or those passing each condition present.

    `patient`: the patient column equals this one patient (compartment-confined scopes);
    `only`: the patient column is one of these (care team); `excluded`: it is not one of these (NULL
    kept: such a row is no patient's); `labels`: resources of `rtype` carrying these `meta.security`
    codes are left out by `_rid`. `optouts` (a count) and `note` only serve describe().
    """

    column: str | None = None
    patient: str | None = None
    only: frozenset[str] | None = None
    excluded: frozenset[str] = frozenset()
    labels: frozenset[str] = frozenset()
    rtype: str | None = None
    optouts: int = 0
    note: str = ""

    def where(self) -> str:
        """The SQL WHERE condition of the filter ('' for all rows); ids and codes are validated first."""
        return _where(self)

    def _build(self) -> str:
        parts: list[str] = []
        col = f'"{self.column}"' if self.column is not None else None
        if col is not None and self.patient is not None:
            if not FHIR_ID.fullmatch(self.patient):  # checked when built; re-checked before inlining
                raise InvalidInput("patient", "not a FHIR id", "[A-Za-z0-9-.]{1,64}")
            parts.append(f"{col} = '{self.patient}'")
        if (self.only is not None or self.excluded) and col is None:
            raise InvalidInput("scope", "patients restricted on a view without a patient column")
        if self.only is not None:
            parts.append(f"{col} IN ({_sql_ids(self.only, 'only_patients')})")
        if self.excluded:
            parts.append(f"({col} IS NULL OR {col} NOT IN ({_sql_ids(self.excluded, 'excluded_patients')}))")
        if self.labels:
            if self.rtype is None or not _TYPE_NAME.fullmatch(self.rtype):
                raise InvalidInput("rtype", "not a resource type name", "e.g. Appointment")
            _sql_labels(self.labels)  # validates every code
            # The labelled resources sit in a temp table the sandbox keeps current (one lookup per row, no list
            # of thousands of rowids rebuilt on every query): labelled_table() names it.
            parts.append(f'"_rid" NOT IN (SELECT rid FROM temp."{labelled_table(self.rtype, self.labels)}")')
        return " AND ".join(parts)

    def describe(self) -> str:
        """The restriction in words, for describe_view (counts, never patient ids)."""
        parts: list[str] = []
        if self.column is not None and self.patient is not None:
            parts.append(
                f"only rows where {self.column} = '{self.patient}' (your access is confined to Patient/{self.patient})"
            )
        if self.only is not None:
            parts.append(f"only rows of the {len(self.only)} patients you have a care relationship with")
        if self.optouts:
            parts.append(f"rows of {self.optouts} patients who opted out of AI access are excluded")
        if len(self.excluded) > self.optouts:
            others = len(self.excluded) - self.optouts
            parts.append(f"rows of {others} patients whose consent denies you this data are excluded")
        if self.labels:
            parts.append(f"resources labelled {', '.join(sorted(self.labels))} are withheld")
        if self.note:
            parts.append(self.note)
        return "; ".join(parts) if parts else "none: every row of the practice"

    @property
    def governed(self) -> bool:
        """Whether governance (not only the SMART scope) restricts these rows."""
        return self.only is not None or bool(self.excluded or self.labels or self.note)


@lru_cache(maxsize=512)
def _where(rows: RowFilter) -> str:
    """RowFilter.where, built once per distinct filter (the sandbox asks for it on every query)."""
    return rows._build()


@dataclass(frozen=True, slots=True)
class ViewGrant:
    """The decision for one view: offered or not, why, and the row filter when offered."""

    view: str
    allowed: bool
    reason: str
    detail: str
    required_scope: str | None = None
    rows: RowFilter | None = None
    # Columns of elements the role's projection leaves out (minimum necessary): not in the caller's view.
    hidden_columns: tuple[str, ...] = ()

    @property
    def patient(self) -> str | None:
        """The single patient the rows are confined to, or None."""
        return self.rows.patient if self.rows is not None else None


def _patient_column(info: ViewInfo) -> str | None:
    """The column holding the patient a row belongs to (its own id for a Patient view), or None."""
    if info.resource_type == "Patient":
        for col in info.columns:
            if col.path in _RESOURCE_KEY and not col.collection:
                return col.name
        return None
    found = info.column("patient_id")
    if found is not None and _PATIENT_KEY in found.path and not found.collection:
        return found.name
    return None


def _scope_grant(principal: Principal, info: ViewInfo) -> ViewGrant:
    """Decide from the SMART scopes alone whether `principal` may query `info`, and which rows."""
    try:
        plan = plan_access(principal, info.resource_type, "s")
    except InvalidInput:
        return ViewGrant(info.name, False, "view.unsupported_type", f"View {info.name} reads an unsupported type.")
    rtype = info.resource_type
    if not plan.allowed:
        detail = f"View {info.name} needs search access to {rtype}: {plan.decision.detail}"
        return ViewGrant(info.name, False, plan.decision.reason, detail, plan.decision.scope)
    for other in info.also_reads:  # a derived view needs access to every type its rows summarize
        more = plan_access(principal, other, "s")
        if not more.allowed:
            detail = f"View {info.name} summarizes {other}: {more.decision.detail}"
            return ViewGrant(info.name, False, more.decision.reason, detail, more.decision.scope)
        if not more.unconstrained or more.compartment != plan.compartment:
            detail = f"Your scope for {other} is narrowed, so view {info.name} that summarizes it is not offered."
            return ViewGrant(info.name, False, "constraint.unsupported_in_sql", detail, None)
    if not plan.unconstrained:
        detail = (
            f"Your scope for {rtype} is narrowed by SMART v2 constraints, which SQL views cannot apply; "
            f"use search_resources for {rtype}."
        )
        return ViewGrant(info.name, False, "constraint.unsupported_in_sql", detail, None)
    if plan.compartment is None:
        detail = f"All rows (search on {rtype} allowed practice-wide)."
        return ViewGrant(info.name, True, "scope.granted", detail, plan.decision.scope, RowFilter())
    patient = plan.compartment
    if not FHIR_ID.fullmatch(patient):
        return ViewGrant(info.name, False, "context.invalid_patient", "The patient in context is not a FHIR id.")
    column = _patient_column(info)
    if column is None:
        detail = (
            f"Your access is confined to Patient/{patient} and view {info.name} has no patient column "
            "to confine its rows by."
        )
        return ViewGrant(info.name, False, "compartment.not_in_view", detail, None)
    detail = f"Rows of Patient/{patient} only (your access is confined to that patient's compartment)."
    return ViewGrant(info.name, True, "scope.granted", detail, plan.decision.scope, RowFilter(column, patient))


def grant_view(
    principal: Principal, info: ViewInfo, scope: RowScope | None = None, *, facts: StoreFacts | None = None
) -> ViewGrant:
    """Decide whether `principal` may query `info`, and which rows, under its scopes and `scope` (governance).

    `facts` (what the derived tables hold now) decides whether a derived table fits the scope; without
    them a derived table is not offered under a scope that restricts anything. With neither, the SMART
    scopes alone decide (the behaviour before governance).
    """
    grant = _scope_grant(principal, info)
    if (scope is None and facts is None) or not grant.allowed or grant.rows is None:
        return grant  # no governance and nothing known of the derived tables: the scopes alone decide
    scope = scope or RowScope()
    for rtype in (info.resource_type, *info.also_reads):
        if not scope.type_allowed(rtype):
            detail = f"View {info.name} reads {rtype}, which your role may not see (policy file resource_types)."
            return _refuse(info, "role.type_not_allowed", detail)
    # Without a scope every patient is visible: the rollup is offered only while it leaves nobody out.
    governed = _govern(grant, info, scope, facts or StoreFacts())
    hidden = _hidden_columns(info, scope)
    return replace(governed, hidden_columns=hidden) if governed.allowed and hidden else governed


def _hidden_columns(info: ViewInfo, scope: RowScope) -> tuple[str, ...]:
    """Columns whose source element (the first step of the column's FHIRPath) the role's projection omits."""
    if info.name in DERIVED:
        return _hidden_derived(info, scope)
    rule = scope.field_rule(info.resource_type)
    if rule is None:
        return ()
    hidden = []
    for col in info.columns:
        root = _ROOT.match(col.path or "")
        if root is not None and not root.group(1).endswith("Key") and not rule.keeps(root.group(1)):
            hidden.append(col.name)
    return tuple(hidden)


# Derived-table columns and the (resource type, elements) they are computed from: hidden when the role's projection
# of that type omits any of those elements (a summary must not reveal what the record projection withholds).
_DERIVED_SOURCES: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {
    "patient_activity": {
        "active": ("Patient", ("active", "deceased")),
        "first_fulfilled_start": ("Appointment", ("start", "status")),
        "last_fulfilled_start": ("Appointment", ("start", "status")),
        "last_fulfilled_practitioner": ("Appointment", ("participant", "status")),
        "last_activity": ("Appointment", ("start", "created")),
        "lifetime_billed": ("Claim", ("item", "total", "status")),
    },
}


def _hidden_derived(info: ViewInfo, scope: RowScope) -> tuple[str, ...]:
    """A derived table's columns whose source elements the role's projections omit."""
    hidden = []
    for column, (rtype, elements) in _DERIVED_SOURCES.get(info.name, {}).items():
        rule = scope.field_rule(rtype)
        if rule is not None and not all(rule.keeps(e) for e in elements):
            hidden.append(column)
    return tuple(hidden)


def _refuse(info: ViewInfo, reason: str, detail: str) -> ViewGrant:
    return ViewGrant(info.name, False, reason, detail, None)


def _patient_free(info: ViewInfo) -> bool:
    """Whether the view's rows are no patient's: a type outside every Patient compartment (FHIR R4 §3.2.0)."""
    if info.resource_type == "Patient" or info.also_reads:
        return False
    try:
        return not compartment_params(info.resource_type)
    except FhirgateError:
        return False


def _govern(grant: ViewGrant, info: ViewInfo, scope: RowScope, facts: StoreFacts) -> ViewGrant:
    """Narrow an allowed grant by the RowScope (fail closed where the view cannot express it)."""
    rows = grant.rows
    assert rows is not None
    types = (info.resource_type, *info.also_reads)
    excluded = frozenset[str]().union(*(scope.excluded_for(t) for t in types))
    only, labels = scope.only_patients, scope.withheld_labels
    if rows.patient is not None:  # confined to one patient: no other patient's exclusion can matter
        excluded &= {rows.patient}
        only = None if only is None else only & {rows.patient}
    ids = excluded | (only or frozenset())
    if not all(FHIR_ID.fullmatch(p) for p in ids) or not all(LABEL_CODE.fullmatch(c) for c in labels):
        return _refuse(info, "governance.invalid_scope", "Your row scope names an invalid patient id or label.")
    optouts = len(excluded & scope.optout_patients)
    left_out = ""
    if info.name in DERIVED:
        refused = _labels_refusal(info, labels, facts)
        if isinstance(refused, ViewGrant):
            return refused
        left_out = refused
    if info.name in ROLLUPS:
        counted, views = ROLLUPS[info.name]
        left = facts.optouts_of(info.name)
        fits = only is None and left is not None and excluded == scope.optout_patients == left
        # Each summarized type on its own (not only their union): every type's rows leave out the same patients.
        if not (fits and all(scope.excluded_for(t) == left for t in types)):
            detail = (
                f"View {info.name} has no patient column and the patients it leaves out (opted-out patients) are "
                f"not exactly the patients excluded for you; query the {views} view instead."
            )
            return _refuse(info, "governance.not_in_view", detail)
        note = f"{counted} of patients who opted out of AI access are left out of this rollup" if excluded else ""
        governed = RowFilter(optouts=optouts, note="; ".join(n for n in (note, left_out) if n))
        return ViewGrant(
            info.name, True, grant.reason, f"{grant.detail} {governed.describe()}.", grant.required_scope, governed
        )
    column = rows.column or _patient_column(info)
    if (only is not None or excluded) and column is None:
        if not _patient_free(info):
            detail = (
                f"Your access excludes some patients' rows and view {info.name} has no patient column to exclude "
                "them by, so it is not offered."
            )
            return _refuse(info, "governance.not_in_view", detail)
        only, excluded, optouts = None, frozenset(), 0
    governed = RowFilter(
        column=column,
        patient=rows.patient,
        only=only,
        excluded=excluded,
        labels=labels if info.name not in DERIVED else frozenset(),
        rtype=info.resource_type,
        optouts=optouts,
        note=left_out,
    )
    if not governed.governed:
        return grant
    return ViewGrant(
        info.name, True, grant.reason, f"{grant.detail} {governed.describe()}.", grant.required_scope, governed
    )


def _labels_refusal(info: ViewInfo, withheld: frozenset[str], facts: StoreFacts) -> ViewGrant | str:
    """The refusal of derived table `info` when the labels it leaves out differ from those `withheld`, else
    the note saying what it leaves out ('' when none of those labels is present)."""
    if info.name not in facts.current:
        detail = f"View {info.name} is not at its current version in this store; query the underlying views instead."
        return _refuse(info, "governance.summary_outdated", detail)
    if not (LEFT_OUT_LABELS | withheld) <= facts.looked_up:
        detail = f"Which security labels view {info.name} summarizes is not known; query the underlying views instead."
        return _refuse(info, "governance.labels_in_summary", detail)
    types = summarized_types(info)
    present = facts.present(types)
    dropped, hidden = present & LEFT_OUT_LABELS, present & withheld
    if dropped != hidden:
        parts = []
        if dropped - hidden:
            parts.append(f"it leaves out resources labelled {', '.join(sorted(dropped - hidden))}, which you may see")
        if hidden - dropped:
            parts.append(f"it keeps resources labelled {', '.join(sorted(hidden - dropped))}, withheld from you")
        detail = (
            f"View {info.name} summarizes {', '.join(types)} resources and {'; '.join(parts)}; "
            "query the underlying views instead."
        )
        return _refuse(info, "governance.labels_in_summary", detail)
    if not dropped:
        return ""
    return f"resources labelled {', '.join(sorted(dropped))} are left out of this summary (withheld from you)"


def grant_views(
    principal: Principal,
    catalog: Mapping[str, ViewInfo],
    scope: RowScope | None = None,
    *,
    facts: StoreFacts | None = None,
) -> dict[str, ViewGrant]:
    """The decision for every view in the catalog, by view name."""
    return {name: grant_view(principal, info, scope, facts=facts) for name, info in catalog.items()}


def confined_patients(grants: Mapping[str, ViewGrant], views: set[str] | frozenset[str]) -> list[str]:
    """The patients whose rows `views` were confined to (for the audit record), sorted."""
    return sorted({g.patient for name, g in grants.items() if name in views and g.patient is not None})
