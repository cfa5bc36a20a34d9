"""Questions about how resources relate, answered from the search indexes without reading bodies.

`linked_patients` finds the patients a given resource (a Practitioner, say) is linked to through
reference search parameters (Appointment.practitioner, CareTeam.participant, Patient.general-practitioner):
the governance layer's care-team relationships. `fingerprint` summarizes a type's current state cheaply,
so a cache of derived facts (the practice's Consents) knows when to reload.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import apsw

PidOf = Callable[[str, str], int]


def linked_patients(
    conn: apsw.Connection, pid_of: PidOf, target: str, via: Sequence[tuple[str, str]]
) -> frozenset[str]:
    """Patients whose compartment holds a resource referencing `target` (`Type/id`) through one of `via`.

    `via` lists (resource type, reference search parameter); a Patient resource referencing the target
    (Patient.general-practitioner) links that patient itself (FHIR R4 CompartmentDefinition/patient).
    """
    ttype, _, tid = target.partition("/")
    out: set[str] = set()
    for rtype, code in via:
        pid = pid_of(rtype, code)
        if rtype == "Patient":
            sql = (
                "SELECT r.id FROM ix_reference x JOIN resources r ON r.rid = x.rid "
                "WHERE x.pid = ? AND x.tid = ? AND x.ttype = ? AND r.deleted = 0"
            )
        else:
            sql = (
                "SELECT DISTINCT c.patient FROM ix_reference x JOIN compartment c ON c.rid = x.rid "
                "WHERE x.pid = ? AND x.tid = ? AND x.ttype = ?"
            )
        out.update(str(row[0]) for row in conn.execute(sql, (pid, tid, ttype)))
    return frozenset(out)


def fingerprint(conn: apsw.Connection, resource_type: str) -> str:
    """A value that changes whenever a resource of the type is created, updated or deleted."""
    row: Any = conn.execute(
        "SELECT count(*), total(version), total(deleted), max(rid), max(lue) FROM resources WHERE type = ?",
        (resource_type,),
    ).fetchone()
    return "|".join(str(v) for v in row)
