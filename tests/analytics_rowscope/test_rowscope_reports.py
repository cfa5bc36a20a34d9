"""Reports under a RowScope equal the same reports on a store where the excluded patients were never loaded;
the rollup leaves opted-out patients out and is kept so when Consents are added or revoked."""

from __future__ import annotations

import copy
import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest
from rowscope_support import TODAY, Practice, excluded_set

from fhirgate.analytics.sql.policy import StoreFacts
from fhirgate.analytics.views import rollup
from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.rowscope import RowScope
from fhirgate.core.policy.scopes import ScopeSet
from fhirgate.service import reports
from fhirgate.service.auditing import Trail

USER = Principal(sub="t", issuer="urn:test", scopes=ScopeSet.parse("user/*.rs"), client_id="tests")
REPORTS = {
    "no_show_summary": {"period": "last_90_days"},
    "service_volume": {"period": "last_90_days"},
    "provider_utilization": {"period": "last_90_days"},
    "cancellations": {"period": "last_90_days"},
    "patients_not_seen": {"days": 90},
    "diabetes_without_a1c": {},
    "new_vs_returning_patients": {"period": "last_90_days"},
    "lapsed_high_value_patients": {},
}


def report(p: Practice, name: str, scope: RowScope | None, facts: StoreFacts | None = None) -> dict[str, Any]:
    box = p.sandbox()
    if facts is not None:
        box.facts = lambda labels=frozenset(): facts  # type: ignore[method-assign]
    try:
        params = {"today": TODAY.isoformat(), **REPORTS[name]}
        return reports.run_report(SimpleNamespace(sandbox=box), USER, Trail("report"), name, params, scope=scope)  # type: ignore[arg-type]
    finally:
        box.close()


def essence(result: dict[str, Any]) -> tuple[Any, ...]:
    return result["rows"], result["headline"], result["summary"], result["page"]["total_rows"]


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_scoped_report_equals_the_report_without_those_patients(whole: Practice, without: Practice, name: str) -> None:
    excluded = excluded_set(whole)
    scope = RowScope(excluded_patients=excluded, optout_patients=whole.optouts)
    scoped = report(whole, name, scope)
    reference = report(without, name, None)
    assert essence(scoped) == essence(reference)
    if name not in ("diabetes_without_a1c", "lapsed_high_value_patients"):  # excluded ones may not be listed
        assert essence(scoped) != essence(report(whole, name, None))
    held = scoped["withheld"]
    assert held["patients_excluded"] == "fewer than 11"  # 5 patients: a small cell
    assert "CMS" in held["note"]
    assert not any(p in str(held) for p in excluded)
    assert "withheld" not in reference


def test_withheld_count_shown_from_eleven(whole: Practice) -> None:
    many = frozenset(whole.patients()[:12])
    result = report(whole, "patients_not_seen", RowScope(excluded_patients=many))
    assert result["withheld"]["patients_excluded"] == 12
    assert not {r["patient_id"] for r in result["rows"]} & many


@pytest.mark.parametrize("name", ["no_show_summary", "service_volume", "provider_utilization", "cancellations"])
def test_fast_and_slow_paths_agree_under_an_optout_only_scope(whole: Practice, name: str) -> None:
    scope = RowScope(excluded_patients=whole.optouts, optout_patients=whole.optouts)
    fast = report(whole, name, scope)
    slow = report(whole, name, scope, StoreFacts(rollup_optouts=None))
    assert "appointment_daily" in fast["views"] and "appointment_daily" not in slow["views"]
    assert essence(fast) == essence(slow)


SENSITIVE = frozenset({"R", "V", "ETH", "PSY", "HIV", "STD", "SDV", "SEX", "BH", "GDIS", "42CFRPart2"})


def _raw_billed(whole: Practice, withheld: frozenset[str]) -> dict[str, float]:
    """Lifetime billed per patient from the raw Claims' and Invoices' lines (not the views), leaving out
    resources whose raw meta.security carries a withheld code."""
    out: dict[str, float] = {}

    def invoice_amount(item: dict[str, Any]) -> Any:
        return next((c.get("amount", {}).get("value") for c in item.get("priceComponent", [])), None)

    for rtype, lines, amount_of in (
        ("Claim", "item", lambda it: (it.get("net") or {}).get("value")),
        ("Invoice", "lineItem", invoice_amount),
    ):
        for body in whole.by_type.get(rtype, []):
            codes = {c.get("code") for c in body.get("meta", {}).get("security", [])}
            if codes & withheld or body.get("status") in ("draft", "cancelled", "entered-in-error"):
                continue
            patient = str((body.get("patient") or body.get("subject") or {}).get("reference", "")).removeprefix(
                "Patient/"
            )
            for item in body.get(lines, []):
                value = amount_of(item)
                if value is not None:
                    out[patient] = out.get(patient, 0.0) + float(value)
    return {p: round(v, 2) for p, v in out.items()}


@pytest.mark.parametrize("sees_psy", [False, True], ids=["staff-summary", "sees-psy-scan"])
def test_lapsed_report_under_labels_takes_the_right_path_and_numbers(whole: Practice, sees_psy: bool) -> None:
    withheld = SENSITIVE - {"PSY", "R"} if sees_psy else SENSITIVE
    opt = whole.optouts
    scope = RowScope(excluded_patients=opt, optout_patients=opt, withheld_labels=withheld)
    out = report(whole, "lapsed_high_value_patients", scope)
    assert ("patient_activity" in out["views"]) is not sees_psy
    want = _raw_billed(whole, withheld)
    assert out["rows"]
    for row in out["rows"]:
        assert round(row["lifetime_billed"], 2) == want[row["patient_id"]], row["patient_id"]
    staff = _raw_billed(whole, SENSITIVE)
    if sees_psy:
        assert any(staff.get(r["patient_id"], 0.0) != round(r["lifetime_billed"], 2) for r in out["rows"])


SCOPES = "http://terminology.hl7.org/CodeSystem/consentscope"


def _daily(store: Any) -> list[tuple[Any, ...]]:
    return sorted(tuple(r) for r in store._conn().execute("SELECT * FROM appointment_daily"))


def _recomputed(store: Any) -> list[tuple[Any, ...]]:
    store.run_write(lambda conn: rollup.rebuild(conn))
    return _daily(store)


def _appointments_of(store: Any, patient: str) -> int:
    row = store._conn().execute("SELECT count(*) FROM appointment WHERE patient_id = ?", (patient,)).fetchone()
    return int(row[0])


def test_rollup_follows_consents_added_and_revoked(fresh: Any, whole: Practice) -> None:
    conn = fresh._conn()
    total = lambda: conn.execute("SELECT sum(n) FROM appointment_daily WHERE dim = 'practitioner'").fetchone()[0]  # noqa: E731
    patient = next(p for p in whole.patients() if p not in whole.optouts and _appointments_of(fresh, p) > 0)
    n = _appointments_of(fresh, patient)
    before = total()
    consent = {
        "resourceType": "Consent", "id": "rs-optout", "status": "active",
        "scope": {"coding": [{"system": SCOPES, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient}"},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
    }  # fmt: skip
    fresh.write([consent])
    assert total() == before - n
    incremental = _daily(fresh)
    assert incremental == _recomputed(fresh)
    assert patient in (rollup.excluded_patients(conn) or ())
    revoked = copy.deepcopy(consent)
    revoked["status"] = "inactive"
    fresh.write([revoked])
    assert total() == before
    assert _daily(fresh) == _recomputed(fresh)
    fresh.write([consent])
    assert fresh.delete("Consent", "rs-optout")
    assert total() == before
    assert _daily(fresh) == _recomputed(fresh)


def test_an_old_rollup_is_rebuilt_on_open(fresh: Any) -> None:
    conn = fresh._conn()
    conn.execute(f'DROP INDEX "{rollup.INDEX}"')
    conn.execute(f'CREATE INDEX "{rollup.NAME}$dim_day" ON {rollup.NAME}(dim, day)')
    assert not rollup.current(conn)
    assert rollup.excluded_patients(conn) == frozenset()  # an old rollup leaves nobody out
    derived = fresh.derived
    assert derived.load(conn)
    fresh.run_write(derived.prepare)
    assert rollup.current(conn)
    assert rollup.excluded_patients(conn)


def test_today_is_the_demo_anchor() -> None:
    assert dt.date(2026, 7, 1) == TODAY
