"""Which views are materialized: the built-in practice views (definitions/*.json) and user-added ones.

A view is a SQL on FHIR v2 ViewDefinition plus the indexes its table gets. Built-in views declare
indexes suited to practice reports here; a user view gets `_rid` and `patient_id` (when it has that
column). View names double as table names beside the store, so they are validated and must not collide
with the store's own tables.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from fhirgate.errors import InvalidInput

# Bump when the table layout or the row conversion changes: every view is rebuilt on the next open.
LAYOUT_VERSION = 1

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
NAME_RULE = (
    "[a-z][a-z0-9_]{0,62}, not a store table (resources, history, params, ix_*, compartment, store_meta, "
    "patient_activity, appointment_daily, billing_daily)"
)
# Tables of the store itself (store.sqlite.schema), this registry's own, and SQLite's.
RESERVED_NAMES = frozenset(
    {
        "resources",
        "history",
        "params",
        "compartment",
        "store_meta",
        "views_meta",
        "patient_activity",
        "appointment_daily",
        "billing_daily",
    }
)
RESERVED_PREFIXES = ("ix_", "sqlite_")

# The hidden column holding the store's resource rowid (resources.rid) of the row's resource.
RID_COLUMN = "_rid"

# A table index: its columns, in order.
IndexSpec = tuple[str, ...]

# Indexes of the built-in views beyond `_rid` (and `patient_id`, unless an index below leads with it).
BUILTIN_INDEXES: dict[str, tuple[IndexSpec, ...]] = {
    # Covering indexes for the practice reports: a period scan reads the index only, including the `patient_id`
    # and `_rid` that governed views filter on (opted-out patients, withheld labels: analytics.sql.policy).
    "appointment": (
        (
            "start_time",
            "status",
            "practitioner_id",
            "service_code",
            "patient_id",
            "cancel_reason",
            "minutes",
            "service_display",
            "end_time",
            "_rid",
        ),
        ("practitioner_id", "start_time", "status", "patient_id", "_rid"),
        ("patient_id", "status", "start_time", "practitioner_id", "created", "_rid"),
    ),
    "encounter": (("patient_id", "start_time"),),
    # Covering for the care-gap report: the latest result of a code per patient without a table lookup.
    "observation": (("code", "patient_id", "effective", "system", "status", "value", "_rid"),),
    "condition": (("code", "patient_id", "system", "clinical_status", "verification_status", "onset", "_rid"),),
    # Covering for revenue by service in a period (service_volume) and lifetime billing per patient.
    "claim_line": (
        ("patient_id", "status", "amount", "_rid"),
        ("service_date", "status", "service_display", "amount", "patient_id", "_rid"),
    ),
    "invoice_line": (
        ("patient_id", "status", "amount", "_rid"),
        ("date", "status", "service_display", "amount", "patient_id", "_rid"),
    ),
    "patient": (("id",), ("active", "deceased", "id", "_rid")),
}

DEFINITIONS_DIR = Path(__file__).parent / "definitions"


def check_name(name: Any) -> str:
    """A valid view (= table) name, else InvalidInput naming what is allowed."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidInput("name", "not a valid view name", NAME_RULE)
    if name in RESERVED_NAMES or name.startswith(RESERVED_PREFIXES):
        raise InvalidInput("name", f"{name!r} is reserved for the store's own tables", NAME_RULE)
    return name


@dataclass(frozen=True, slots=True)
class ViewSpec:
    """One materialized view: its ViewDefinition JSON, whether it is built in, and the indexes of its table."""

    name: str
    definition: dict[str, Any]
    builtin: bool
    indexes: tuple[IndexSpec, ...] = ()

    @property
    def resource(self) -> str:
        """The FHIR resource type the view reads."""
        return str(self.definition.get("resource", ""))

    @property
    def text(self) -> str:
        """The definition as canonical JSON (sorted keys), as recorded in views_meta."""
        return orjson.dumps(self.definition, option=orjson.OPT_SORT_KEYS).decode()

    @property
    def digest(self) -> str:
        """A hash of everything the table depends on: definition, indexes, table layout version."""
        doc = {"definition": self.definition, "indexes": self.indexes, "layout": LAYOUT_VERSION}
        return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()


def table_indexes(spec_indexes: tuple[IndexSpec, ...], columns: list[str]) -> tuple[IndexSpec, ...]:
    """The indexes a view table gets: `_rid`, `patient_id` (unless one of `spec_indexes` leads with it), the rest."""
    out: list[IndexSpec] = [(RID_COLUMN,)]
    if "patient_id" in columns and not any(ix[0] == "patient_id" for ix in spec_indexes):
        out.append(("patient_id",))
    out += [ix for ix in spec_indexes if ix not in out]
    return tuple(out)


@cache
def builtin_views() -> tuple[ViewSpec, ...]:
    """The built-in practice views, by name; a malformed shipped definition is a packaging bug (raises)."""
    out = []
    for path in sorted(DEFINITIONS_DIR.glob("*.json")):
        definition = orjson.loads(path.read_bytes())
        name = check_name(definition.get("name"))
        if name != path.stem:
            raise ValueError(f"{path.name}: view name {name!r} does not match the file name")
        out.append(ViewSpec(name, definition, True, BUILTIN_INDEXES.get(name, ())))
    return tuple(out)


def builtin_names() -> frozenset[str]:
    """Names of the built-in views."""
    return frozenset(v.name for v in builtin_views())


def user_view(definition: Any) -> ViewSpec:
    """A user view from parsed ViewDefinition JSON; InvalidInput for a missing, bad or taken name."""
    if not isinstance(definition, dict):
        raise InvalidInput("definition", "not a JSON object", "a SQL on FHIR ViewDefinition")
    if definition.get("resourceType") != "ViewDefinition":
        raise InvalidInput("definition", "resourceType must be ViewDefinition", "a SQL on FHIR ViewDefinition")
    if "name" not in definition:
        raise InvalidInput("name", "the ViewDefinition has no name (it names the table)", NAME_RULE)
    name = check_name(definition["name"])
    if name in builtin_names():
        raise InvalidInput("name", f"{name!r} is a built-in view", "a name no built-in view uses")
    return ViewSpec(name, definition, False, ())
