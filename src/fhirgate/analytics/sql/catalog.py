"""The views SQL can query: names, grain, FHIR resource type and documented columns of each.

Built from the ViewDefinitions (SQL on FHIR v2) of the built-in practice views and of any user views
recorded in `views_meta`; the column order and SQL types come from the materialized table when it
exists, so what is described is what a query sees. Pure data: no database access here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fhirgate.analytics.views.materializer import affinity

_TYPE_NOTES = {
    "id": "FHIR id (the part after 'Type/'); use it to join views",
    "code": "FHIR code (a short coded value)",
    "string": "text",
    "markdown": "text",
    "uri": "code system URI, e.g. http://snomed.info/sct, http://loinc.org, http://hl7.org/fhir/sid/icd-10-cm",
    "instant": "FHIR instant as text with a UTC offset, e.g. 2025-03-04T09:30:00-05:00",
    "dateTime": "FHIR dateTime as text: YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with a UTC offset",
    "date": "FHIR date as text: YYYY-MM-DD (may be partial: YYYY or YYYY-MM)",
    "boolean": "1 = true, 0 = false",
    "decimal": "number",
    "integer": "integer",
    "positiveInt": "integer >= 1",
    "unsignedInt": "integer >= 0",
}


@dataclass(frozen=True, slots=True)
class ViewColumn:
    """One column of a view: its name, FHIR type, SQLite type, FHIRPath source and a description."""

    name: str
    fhir_type: str | None
    sql_type: str
    path: str
    collection: bool = False

    @property
    def description(self) -> str:
        """What the column holds, for the model: the type's format and where the value comes from."""
        if self.collection:
            note = "JSON array as text; match with LIKE or json_extract(column, '$[0]')"
        else:
            note = _TYPE_NOTES.get(self.fhir_type or "", "value")
        return f"{note}. From FHIRPath {self.path}" if self.path else note

    def as_dict(self) -> dict[str, Any]:
        """The column as a describe_view entry."""
        return {
            "name": self.name,
            "type": self.sql_type or "ANY",
            "fhir_type": self.fhir_type,
            "description": self.description,
        }


@dataclass(frozen=True, slots=True)
class ViewInfo:
    """One queryable view: name (= table name), title, grain, FHIR resource type and columns."""

    name: str
    title: str
    grain: str
    resource_type: str
    columns: tuple[ViewColumn, ...]
    builtin: bool = True
    # Other resource types the view's rows derive from: the caller must be allowed to search these too.
    also_reads: tuple[str, ...] = ()

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> ViewColumn | None:
        """The column called `name`, or None."""
        return next((c for c in self.columns if c.name == name), None)

    def with_table_columns(self, table_columns: Iterable[tuple[str, str]]) -> ViewInfo:
        """This view with the columns (name, declared type) of its materialized table, in table order."""
        out: list[ViewColumn] = []
        for name, decl in table_columns:
            known = self.column(name)
            if known is None:
                out.append(ViewColumn(name, None, decl.upper(), ""))
            else:
                out.append(ViewColumn(name, known.fhir_type, decl.upper(), known.path, known.collection))
        return ViewInfo(
            self.name, self.title, self.grain, self.resource_type, tuple(out), self.builtin, self.also_reads
        )


def _walk(selects: Any, out: list[ViewColumn]) -> None:
    """Columns of a ViewDefinition's select list in SQL on FHIR v2 order: column, select, then unionAll."""
    if not isinstance(selects, list):
        return
    for select in selects:
        if not isinstance(select, dict):
            continue
        for col in select.get("column") or ():
            if isinstance(col, dict) and isinstance(col.get("name"), str):
                fhir_type = col.get("type") if isinstance(col.get("type"), str) else None
                collection = bool(col.get("collection"))
                sql_type = affinity(fhir_type, collection)  # the type the materializer declared
                out.append(ViewColumn(col["name"], fhir_type, sql_type, str(col.get("path") or ""), collection))
        _walk(select.get("select"), out)
        union = select.get("unionAll")
        if isinstance(union, list) and union:
            _walk(union[:1], out)  # every branch of a unionAll has the same columns


def view_from_definition(definition: Mapping[str, Any], *, builtin: bool) -> ViewInfo | None:
    """The ViewInfo of one ViewDefinition, or None when it has no usable name or resource."""
    name, resource = definition.get("name"), definition.get("resource")
    if not isinstance(name, str) or not isinstance(resource, str):
        return None
    columns: list[ViewColumn] = []
    _walk(definition.get("select"), columns)
    title = definition.get("title")
    grain = definition.get("description")
    return ViewInfo(
        name=name,
        title=title if isinstance(title, str) else name,
        grain=grain if isinstance(grain, str) else f"Rows from {resource} resources.",
        resource_type=resource,
        columns=tuple(columns),
        builtin=builtin,
    )


def builtin_views() -> dict[str, ViewInfo]:
    """The built-in practice views, from their shipped ViewDefinitions."""
    from fhirgate.analytics.views.registry import builtin_views as specs

    out: dict[str, ViewInfo] = {}
    for spec in specs():
        info = view_from_definition(spec.definition, builtin=True)
        if info is not None:
            out[info.name] = info
    out[ACTIVITY.name] = ACTIVITY
    out[DAILY.name] = DAILY
    out[BILLING.name] = BILLING
    return out


# The per-patient summary maintained with the views (analytics.views.summary): Patient-grained, so a
# caller confined to one patient sees only that patient's row (patient_id is the Patient's own id).
# It leaves out resources labelled with analytics.views.summary.LEFT_OUT_LABELS (as appointment_daily does);
# analytics.sql.policy offers both only when that is what the caller's scope withholds.
ACTIVITY = ViewInfo(
    name="patient_activity",
    title="Patient activity summary",
    grain=(
        "One row per patient with a Patient resource or any appointment, claim line or invoice line: first and "
        "latest fulfilled appointment start, latest appointment start or created date (any status), lifetime "
        "billed amount and whether the patient is active (Patient.active true and not deceased). Patients, "
        "appointments, claims and invoices carrying a sensitive security label (R V ETH PSY HIV STD SDV SEX BH "
        "GDIS 42CFRPart2) are left out; offered only when exactly those present are withheld from you."
    ),
    resource_type="Patient",
    columns=(
        ViewColumn("patient_id", "id", "TEXT", "getResourceKey()"),
        ViewColumn("first_fulfilled_start", "dateTime", "TEXT", "min(appointment.start_time where fulfilled)"),
        ViewColumn("last_fulfilled_start", "dateTime", "TEXT", "max(appointment.start_time where fulfilled)"),
        ViewColumn("last_fulfilled_practitioner", "id", "TEXT", "practitioner_id of that appointment ('' when none)"),
        ViewColumn("last_activity", "dateTime", "TEXT", "max(appointment.start_time, appointment.created)"),
        ViewColumn(
            "lifetime_billed",
            "decimal",
            "REAL",
            "sum(claim_line.amount + invoice_line.amount) not draft, cancelled or entered-in-error",
        ),
        ViewColumn("active", "boolean", "INTEGER", "patient.active = 1 and not patient.deceased (0 otherwise)"),
    ),
    # Patient too: the panel facts come from the Patient resource, so its labels and exclusions apply.
    also_reads=("Patient", "Appointment", "Claim", "Invoice"),
)


# The per-day appointment rollup maintained with the views (analytics.views.rollup). It has no patient
# column, so a caller confined to one patient is not offered it (policy.grant_view fails closed).
DAILY = ViewInfo(
    name="appointment_daily",
    title="Appointments per day by provider, service, hour and cancellation reason",
    grain=(
        "One row per local start day, dimension, status and key: dim 'practitioner' (key practitioner_id), "
        "'service' (key service_code, label the service name), 'hour' (key the start hour '09'), 'reason' "
        "(key cancel_reason, cancelled only); n appointments and their summed minutes. Appointments of "
        "patients who opted out of AI access, and appointments carrying a sensitive security label (R V ETH PSY "
        "HIV STD SDV SEX BH GDIS 42CFRPart2), are left out; offered only when that matches what is withheld from you."
    ),
    resource_type="Appointment",
    columns=(
        ViewColumn("day", "date", "TEXT", "substr(appointment.start_time, 1, 10)"),
        ViewColumn("dim", "code", "TEXT", "practitioner | service | hour | reason"),
        ViewColumn("status", "code", "TEXT", "appointment.status"),
        ViewColumn("key", "string", "TEXT", "the dimension's value (NULL when the appointment has none)"),
        ViewColumn("label", "string", "TEXT", "max(appointment.service_display) for dim service, else NULL"),
        ViewColumn("n", "integer", "INTEGER", "count(appointment)"),
        ViewColumn("minutes", "decimal", "REAL", "sum(minutesDuration, else end - start in minutes)"),
    ),
)


# The per-day billing rollup maintained with the views (analytics.views.billing): no patient column either,
# so it is offered under the same rule as appointment_daily (policy.grant_view).
BILLING = ViewInfo(
    name="billing_daily",
    title="Billed line items per day by service",
    grain=(
        "One row per day, source ('claim': claim_line by service_date; 'invoice': invoice_line by date) and "
        "service_display: the summed amount and the number of line items, counting only lines whose Claim or "
        "Invoice status is not draft, cancelled or entered-in-error. Lines of patients who opted out of AI access, "
        "and of Claims and Invoices carrying a sensitive security label (R V ETH PSY HIV STD SDV SEX BH GDIS "
        "42CFRPart2), are left out; offered only when that matches what is withheld from you."
    ),
    resource_type="Claim",
    columns=(
        ViewColumn("day", "date", "TEXT", "substr(claim_line.service_date | invoice_line.date, 1, 10)"),
        ViewColumn("source", "code", "TEXT", "claim | invoice"),
        ViewColumn("service_display", "string", "TEXT", "claim_line.service_display | invoice_line.service_display"),
        ViewColumn("amount", "decimal", "REAL", "sum(amount) of the billed lines"),
        ViewColumn("lines", "integer", "INTEGER", "count(line items)"),
    ),
    also_reads=("Invoice",),
)
