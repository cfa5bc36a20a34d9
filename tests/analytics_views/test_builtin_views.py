"""The built-in practice views, materialized on a small demo practice: layout, indexes, plausible content."""

# ruff: noqa: E501 - test data reads best on one line.

from __future__ import annotations

import pytest
from helpers import q

from fhirgate.analytics.sof import load_view
from fhirgate.analytics.views.registry import BUILTIN_INDEXES, builtin_views
from fhirgate.store.sqlite.store import SqliteStore

BUILTINS = [v.name for v in builtin_views()]


def test_all_thirteen_builtins_ship() -> None:
    assert sorted(BUILTINS) == sorted(
        [
            "patient", "practitioner", "appointment", "encounter", "condition", "observation",
            "medication_request", "immunization", "allergy", "claim_line", "invoice_line", "coverage", "consent",
        ]
    )  # fmt: skip


@pytest.mark.parametrize("name", BUILTINS)
def test_table_has_the_view_columns_in_order_then_rid(practice: SqliteStore, name: str) -> None:
    spec = next(v for v in builtin_views() if v.name == name)
    expected = [c.name for c in load_view(spec.definition).columns]
    cols = [r[1] for r in q(practice, f'PRAGMA table_info("{name}")')]
    assert cols == [*expected, "_rid"]
    notnull = {r[1]: r[3] for r in q(practice, f'PRAGMA table_info("{name}")')}
    assert notnull["_rid"] == 1


@pytest.mark.parametrize("name", BUILTINS)
def test_every_current_resource_has_rows_and_no_stray_rids(practice: SqliteStore, name: str) -> None:
    spec = next(v for v in builtin_views() if v.name == name)
    live = q(practice, "SELECT count(*) FROM resources WHERE type = ? AND deleted = 0", (spec.resource,))[0][0]
    rids = q(practice, f'SELECT count(DISTINCT _rid) FROM "{name}"')[0][0]
    stray = q(practice, f'SELECT count(*) FROM "{name}" v LEFT JOIN resources r ON r.rid = v._rid '
                        "WHERE r.rid IS NULL OR r.deleted = 1 OR r.type != ?", (spec.resource,))[0][0]  # fmt: skip
    assert stray == 0
    if name in ("claim_line", "invoice_line"):
        assert 0 < rids <= live  # forEach: a claim without items has no row
    else:
        assert rids == live  # forEachOrNull / plain columns: every resource has a row
    if name != "consent":
        assert live > 0, f"the demo practice should hold {spec.resource}"
    # id is the resource id of the row's resource
    mismatched = q(practice, f'SELECT count(*) FROM "{name}" v JOIN resources r ON r.rid = v._rid WHERE r.id != v.id')
    assert mismatched[0][0] == 0


def test_indexes_for_practice_reports(practice: SqliteStore) -> None:
    for name in BUILTINS:
        indexed = set()
        for _, ix_name, *_ in q(practice, f'PRAGMA index_list("{name}")'):
            indexed.add(tuple(r[2] for r in q(practice, f'PRAGMA index_info("{ix_name}")')))
        assert ("_rid",) in indexed, name
        cols = [r[1] for r in q(practice, f'PRAGMA table_info("{name}")')]
        if "patient_id" in cols:
            assert any(ix[0] == "patient_id" for ix in indexed), name
        for spec in BUILTIN_INDEXES.get(name, ()):
            assert spec in indexed, (name, spec)


def test_report_queries_use_the_indexes(practice: SqliteStore) -> None:
    plan = " ".join(
        str(r)
        for r in q(
            practice,
            "EXPLAIN QUERY PLAN SELECT * FROM appointment WHERE practitioner_id = ? AND start_time >= ?",
            ("prac-001", "2026-01-01"),
        )
    )
    assert "appointment$practitioner_id$start_time" in plan


def test_fulfilled_appointments_have_patient_and_practitioner(practice: SqliteStore) -> None:
    rows = q(
        practice, "SELECT patient_id, practitioner_id, start_time, minutes FROM appointment WHERE status = 'fulfilled'"
    )
    assert len(rows) > 10
    assert all(p and pr and st for p, pr, st, _ in rows)
    assert all(isinstance(m, int) and m > 0 for *_, m in rows)
    # every patient_id names a Patient row of the patient view
    orphans = q(practice, "SELECT count(*) FROM appointment a LEFT JOIN patient p ON p.id = a.patient_id "
                          "WHERE a.patient_id IS NOT NULL AND p.id IS NULL")  # fmt: skip
    assert orphans[0][0] == 0


def test_claim_line_amounts_sum_to_each_claims_total(practice: SqliteStore) -> None:
    rows = q(
        practice,
        "SELECT c.id, round(sum(c.amount), 2), round(r.body ->> '$.total.value', 2) FROM claim_line c"
        " JOIN resources r ON r.rid = c._rid GROUP BY c._rid",
    )
    assert len(rows) > 5
    assert all(isinstance(total, float) and total == expected for _, total, expected in rows), rows[:3]


def test_invoice_line_amounts_sum_to_total_net(practice: SqliteStore) -> None:
    rows = q(practice, "SELECT id, round(sum(amount), 2), max(total_net) FROM invoice_line GROUP BY _rid")
    assert rows
    assert all(s == t for _, s, t in rows)


def test_observation_codes_values_and_types(practice: SqliteStore) -> None:
    rows = q(practice, "SELECT patient_id, code, system, effective, value, typeof(value) FROM observation")
    assert rows and all(p and c and s for p, c, s, *_ in rows)
    assert {t for *_, t in rows} <= {"real", "null", "integer"}
    assert any(v is not None for *_, v, _ in rows)
    weights = q(practice, "SELECT value, unit FROM observation WHERE code = '29463-7'")
    assert weights and all(u == "kg" and 1 < v < 400 for v, u in weights)


def test_patient_and_practitioner_rows(practice: SqliteStore) -> None:
    pats = q(practice, "SELECT id, family, gender, birth_date, deceased, mrn, typeof(active) FROM patient")
    assert len(pats) == 12
    assert all(f and g in ("male", "female", "other", "unknown") and b and m for _, f, g, b, _, m, _ in pats)
    assert {d for *_, d, _, _ in pats} <= {0, 1}
    assert {t for *_, t in pats} == {"integer"}
    pracs = q(practice, "SELECT npi, family FROM practitioner")
    assert pracs and all(n and len(n) == 10 and f for n, f in pracs)


def test_encounter_links_to_appointment(practice: SqliteStore) -> None:
    linked = q(practice, "SELECT count(*), count(a.id) FROM encounter e LEFT JOIN appointment a ON a.id = e.appointment_id"
                         " WHERE e.appointment_id IS NOT NULL")  # fmt: skip
    assert linked[0][0] > 0 and linked[0][0] == linked[0][1]


@pytest.mark.parametrize(
    ("name", "column"),
    [
        ("condition", "code"),
        ("medication_request", "code"),
        ("immunization", "code"),
        ("allergy", "code"),
        ("coverage", "payor_id"),
        ("encounter", "start_time"),
    ],
)
def test_key_columns_are_filled(practice: SqliteStore, name: str, column: str) -> None:
    rows = q(practice, f'SELECT count(*), count("{column}"), count(patient_id) FROM "{name}"')
    total, filled, with_patient = rows[0]
    assert total > 0 and filled == total and with_patient == total
