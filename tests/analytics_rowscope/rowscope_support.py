"""Helpers for RowScope tests: a written demo practice read back raw, the excluded set, store writing."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fhirgate.analytics.sql.sandbox import SqlSandbox
from fhirgate.config import DataDir
from fhirgate.core.policy.consent import ConsentSet
from fhirgate.store.factory import open_store

TODAY = dt.date(2026, 7, 1)
PATIENTS = 80
Json = dict[str, Any]


class Practice:
    """A written demo practice: its data dir, store file, raw resources by type and compartment members."""

    def __init__(self, data: DataDir) -> None:
        store = open_store(data, create=False)
        try:
            self.path, self.key = store.reopen_args()
            conn = store._conn()  # type: ignore[attr-defined]
            self.by_type: dict[str, list[Json]] = {}
            self.rids: dict[tuple[str, str], int] = {}
            for rid, rtype, rid_id in conn.execute("SELECT rid, type, id FROM resources WHERE deleted = 0"):
                self.rids[(rtype, rid_id)] = rid
            for rtype in {t for t, _ in self.rids}:
                self.by_type[rtype] = [s.body for s in store.iter_type(rtype)]
            self.compartment: dict[str, set[int]] = {}
            for rid, patient in conn.execute("SELECT rid, patient FROM compartment"):
                self.compartment.setdefault(str(patient), set()).add(int(rid))
            self.labelled: dict[str, set[tuple[str, str]]] = {}  # label code -> (type, id)
            for rtype, items in self.by_type.items():
                for body in items:
                    for label in body.get("meta", {}).get("security", ()):
                        self.labelled.setdefault(str(label.get("code")), set()).add((rtype, body["id"]))
        finally:
            store.close()
        self.optouts = ConsentSet.from_resources(self.by_type.get("Consent", [])).patients_opted_out()

    def patients(self) -> list[str]:
        return sorted(p["id"] for p in self.by_type["Patient"])

    def sandbox(self) -> SqlSandbox:
        return SqlSandbox(self.path, key=self.key)


def appt_patient(appt: Json) -> str | None:
    """The Patient id among an Appointment's participants (None when there is none)."""
    for part in appt.get("participant", ()):
        ref = str(part.get("actor", {}).get("reference", ""))
        if ref.startswith("Patient/"):
            return ref.removeprefix("Patient/")
    return None


def write_store(data: DataDir, resources: list[Json]) -> None:
    store = open_store(data)
    try:
        for start in range(0, len(resources), 500):
            store.write(resources[start : start + 500])
    finally:
        store.close()


def excluded_set(whole: Practice) -> frozenset[str]:
    """The patients the scoped tests exclude: the opt-outs and three more with appointments."""
    with_appts = sorted({p for a in whole.by_type["Appointment"] if (p := appt_patient(a))} - set(whole.optouts))
    return whole.optouts | frozenset(with_appts[3:6])
