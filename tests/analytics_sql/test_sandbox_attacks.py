"""Trying to break the SQL sandbox: escaping the views, the patient restriction, the one-statement rule, limits."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sql_support import principal

from fhirgate.analytics.sql.limits import SqlLimits
from fhirgate.analytics.sql.policy import ViewGrant, grant_views
from fhirgate.analytics.sql.sandbox import SqlSandbox
from fhirgate.errors import AccessDenied, FhirgateError, InvalidInput

USER = principal("user/*.rs")
P1 = principal("launch/patient patient/*.rs", patient="p1")


def grants(sandbox: SqlSandbox, who: object) -> dict[str, ViewGrant]:
    return grant_views(who, sandbox.catalog())  # type: ignore[arg-type]


def rows(sandbox: SqlSandbox, who: object, sql: str, **kw: int) -> list[list[object]]:
    return sandbox.query(grants(sandbox, who), sql, **kw).rows


def refused(sandbox: SqlSandbox, who: object, sql: str) -> FhirgateError:
    with pytest.raises(FhirgateError) as info:
        sandbox.query(grants(sandbox, who), sql)
    return info.value


# -- what works ---------------------------------------------------------------------------------------


def test_practice_wide_user_sees_every_row(sandbox: SqlSandbox) -> None:
    assert rows(sandbox, USER, "SELECT count(*) FROM appointment") == [[30]]
    got = rows(
        sandbox,
        USER,
        "SELECT p.family, count(*) FROM appointment a JOIN practitioner p ON p.id = a.practitioner_id "
        "WHERE a.status = 'noshow' AND a.start_time >= '2025-03-01' AND a.start_time < '2025-04-01' "
        "GROUP BY p.id ORDER BY p.family",
    )
    assert got == [["Grey", 3], ["House", 6]]


def test_patient_token_sees_only_its_rows(sandbox: SqlSandbox) -> None:
    assert rows(sandbox, P1, "SELECT DISTINCT patient_id FROM appointment") == [["p1"]]
    assert rows(sandbox, P1, "SELECT id FROM patient") == [["p1"]]
    assert rows(sandbox, P1, "SELECT count(*) FROM condition") == [[1]]


def test_fhiruser_patient_is_confined_like_a_patient_token(sandbox: SqlSandbox) -> None:
    who = principal("user/*.rs", fhir_user="Patient/p2")
    assert rows(sandbox, who, "SELECT DISTINCT patient_id FROM appointment") == [["p2"]]


# -- escaping the views -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM main.appointment",
        "SELECT patient_id FROM main.appointment WHERE patient_id <> 'p1'",
        "SELECT * FROM appointment UNION ALL SELECT id, patient_id, practitioner_id, location_id, status, "
        "service_code, service_display, service_category, appointment_type, start_time, end_time, minutes, "
        "created, cancel_reason FROM main.appointment",
        # A CTE reports its own name to the authorizer exactly as a view does: naming it like the view
        # must not open the table (this is why the inner views have secret names).
        "WITH appointment AS (SELECT * FROM main.appointment) SELECT * FROM appointment",
        "SELECT * FROM (WITH appointment AS (SELECT patient_id FROM main.appointment) SELECT * FROM appointment)",
        "SELECT * FROM resources",
        "SELECT body FROM main.resources",
        "SELECT * FROM compartment",
        "SELECT * FROM store_meta",
        "SELECT name, sql FROM sqlite_master",
        "SELECT name, sql FROM sqlite_schema",
        "SELECT sql FROM sqlite_temp_master",
        "SELECT sql FROM temp.sqlite_schema",
    ],
)
def test_raw_tables_and_schema_are_denied(sandbox: SqlSandbox, sql: str) -> None:
    for who in (USER, P1):
        err = refused(sandbox, who, sql)
        assert isinstance(err, AccessDenied), (sql, err)
        assert "p2" not in err.message and "raw body" not in err.message


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT (SELECT count(*) FROM main.appointment)",
        "SELECT count(*) FROM main.appointment",
        "SELECT count(*) FROM MAIN.APPOINTMENT",
        "SELECT 1 FROM main.appointment LIMIT 1",
        "SELECT count(*) FROM appointment, main.appointment",
        "SELECT count(*) FROM main.condition",
        "SELECT count(*) FROM resources",
        "SELECT count(*) FROM Resources",
        "SELECT count(*) FROM main.practitioner",
        "SELECT count(*) FROM sqlite_master",
        "WITH RECURSIVE resources(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM resources WHERE n < 3) "
        "SELECT count(*) FROM resources",
    ],
)
def test_row_counts_of_tables_are_denied_to_a_patient(sandbox: SqlSandbox, sql: str) -> None:
    # SQLite reports a table none of whose columns is used as a read of column '' with no view context;
    # for a filtered view that would leak how many rows the whole practice has.
    assert isinstance(refused(sandbox, P1, sql), AccessDenied)


def test_row_counts_of_unfiltered_views_are_what_the_view_shows(sandbox: SqlSandbox) -> None:
    # A practice-wide caller sees every row of the table anyway, so a column-less read reveals nothing more.
    assert rows(sandbox, USER, "SELECT count(*) FROM main.appointment") == rows(
        sandbox, USER, "SELECT count(*) FROM appointment"
    )
    for sql in (
        "SELECT count(*) FROM resources",
        "SELECT count(*) FROM main.compartment",
        "SELECT count(*) FROM sqlite_schema",
    ):
        assert isinstance(refused(sandbox, USER, sql), AccessDenied)
    who = principal("user/Appointment.rs")
    assert isinstance(refused(sandbox, who, "SELECT count(*) FROM condition"), AccessDenied)
    assert isinstance(refused(sandbox, who, "SELECT count(*) FROM main.condition"), AccessDenied)


def test_hidden_rid_column_cannot_be_read(sandbox: SqlSandbox) -> None:
    for sql in ("SELECT _rid FROM appointment", "SELECT a._rid FROM appointment a", "SELECT rowid FROM appointment"):
        err = refused(sandbox, USER, sql)
        assert isinstance(err, InvalidInput)
    assert "_rid" not in [c["name"] for c in sandbox.query(grants(sandbox, USER), "SELECT * FROM appointment").columns]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM appointment a JOIN main.appointment b ON a.practitioner_id = b.practitioner_id",
        "SELECT patient_id FROM appointment UNION SELECT patient_id FROM main.condition",
        "SELECT * FROM appointment WHERE patient_id IN (SELECT patient_id FROM main.appointment)",
        "SELECT * FROM practitioner",
    ],
)
def test_patient_token_cannot_reach_other_patients(sandbox: SqlSandbox, sql: str) -> None:
    err = refused(sandbox, P1, sql)
    assert isinstance(err, AccessDenied)


def test_patient_token_joins_and_unions_stay_inside(sandbox: SqlSandbox) -> None:
    # Joins, subqueries and unions over the views only ever see the patient's own rows.
    got = rows(
        sandbox,
        P1,
        "SELECT DISTINCT a.patient_id FROM appointment a JOIN condition c ON c.patient_id <> a.patient_id "
        "UNION SELECT patient_id FROM condition WHERE patient_id <> 'p1' "
        "UNION SELECT id FROM patient WHERE id IN ('p2', 'p3')",
    )
    assert got == []
    assert rows(sandbox, P1, "SELECT count(*) FROM appointment WHERE patient_id = 'p2'") == [[0]]


def test_views_of_types_not_granted_are_not_there(sandbox: SqlSandbox) -> None:
    who = principal("user/Appointment.rs user/Practitioner.rs")
    assert rows(sandbox, who, "SELECT count(*) FROM appointment") == [[30]]
    err = refused(sandbox, who, "SELECT * FROM condition")
    assert isinstance(err, AccessDenied)
    assert err.required_scope == "user/Condition.rs"
    assert "appointment, practitioner" in err.message
    err = refused(sandbox, who, "SELECT * FROM main.condition")
    assert isinstance(err, AccessDenied)


def test_constrained_scopes_do_not_offer_the_view(sandbox: SqlSandbox) -> None:
    who = principal("user/Condition.rs?category=problem-list-item user/Appointment.rs")
    g = grants(sandbox, who)
    assert not g["condition"].allowed
    assert g["condition"].reason == "constraint.unsupported_in_sql"
    assert isinstance(refused(sandbox, who, "SELECT * FROM condition"), AccessDenied)


# -- statements other than one SELECT ----------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "ATTACH DATABASE '/tmp/x.db' AS x",
        "ATTACH 'file::memory:' AS m",
        "DETACH main",
        "PRAGMA query_only=OFF",
        "PRAGMA table_info(appointment)",
        "PRAGMA writable_schema=ON",
        "INSERT INTO appointment(id) VALUES ('x')",
        "UPDATE appointment SET status = 'x'",
        "DELETE FROM appointment",
        "DROP VIEW appointment",
        "DROP TABLE main.appointment",
        "CREATE TEMP TABLE t(x)",
        "CREATE TEMP VIEW v AS SELECT * FROM main.appointment",
        "CREATE TABLE t(x)",
        "BEGIN",
        "VACUUM",
        "ANALYZE",
        "REINDEX",
    ],
)
def test_non_select_statements_are_refused(sandbox: SqlSandbox, sql: str) -> None:
    assert isinstance(refused(sandbox, USER, sql), FhirgateError)
    # ...and nothing changed: the views still answer as before.
    assert rows(sandbox, USER, "SELECT count(*) FROM appointment") == [[30]]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1; SELECT 2",
        "SELECT 1; PRAGMA query_only=OFF",
        "SELECT 1;\nATTACH 'x.db' AS x",
        "SELECT 1 -- harmless\n; DELETE FROM appointment",
        "SELECT 1; /* comment */ SELECT * FROM main.appointment",
        "/* lead */ SELECT 1; SELECT 2",
        "SELECT 1;;SELECT 2",
    ],
)
def test_only_one_statement(sandbox: SqlSandbox, sql: str) -> None:
    err = refused(sandbox, USER, sql)
    assert isinstance(err, FhirgateError)
    assert "one" in err.message or "SELECT" in err.message


@pytest.mark.parametrize(
    "sql", ["SELECT 1;", "SELECT 1; -- trailing", "SELECT 1 /* ; SELECT 2 */", "  \n SELECT 1 ;\n ", "/* a */ SELECT 1"]
)
def test_comments_and_trailing_semicolons_are_fine(sandbox: SqlSandbox, sql: str) -> None:
    assert rows(sandbox, USER, sql) == [[1]]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT load_extension('/tmp/evil')",
        "SELECT sqlite3mc_config('cipher')",
        "SELECT fts3_tokenizer('simple')",
        "SELECT * FROM json_each('[1,2]')",
        "SELECT * FROM pragma_table_info('appointment')",
        "SELECT * FROM pragma_database_list",
        "SELECT * FROM sqlite_dbpage",
        "EXPLAIN SELECT * FROM appointment",
        "EXPLAIN QUERY PLAN SELECT * FROM appointment",
        "SELECT ?",
        "SELECT :name",
    ],
)
def test_extensions_virtual_tables_explain_and_parameters_are_refused(sandbox: SqlSandbox, sql: str) -> None:
    assert isinstance(refused(sandbox, USER, sql), FhirgateError)


# -- limits -------------------------------------------------------------------------------------------


def test_recursive_bomb_stops_at_the_time_limit(store_path: Path) -> None:
    box = SqlSandbox(store_path, limits=SqlLimits(time_limit_ms=200))
    try:
        g = grant_views(USER, box.catalog())
        started = time.monotonic()
        with pytest.raises(InvalidInput) as info:
            box.query(g, "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r")
        assert time.monotonic() - started < 2.0
        assert "200 ms" in info.value.message
        with pytest.raises(InvalidInput):
            box.query(
                g,
                "SELECT count(*) FROM appointment a, appointment b, appointment c, appointment d, appointment e, "
                "appointment f",
            )
        # The connection is still usable afterwards.
        assert box.query(g, "SELECT count(*) FROM appointment").rows == [[30]]
    finally:
        box.close()


def test_small_recursive_cte_works(sandbox: SqlSandbox) -> None:
    got = rows(
        sandbox,
        USER,
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT sum(n) FROM r",
    )
    assert got == [[15]]


def test_oversized_values_are_refused(sandbox: SqlSandbox) -> None:
    err = refused(sandbox, USER, "SELECT printf('%.*c', 5000, 'x') AS big")
    assert "big" in err.message and "4000" in err.message
    err = refused(sandbox, USER, "SELECT length(zeroblob(50000000))")
    assert "bytes" in err.message


def test_rows_are_paged(sandbox: SqlSandbox) -> None:
    g = grants(sandbox, USER)
    first = sandbox.query(g, "SELECT id FROM appointment ORDER BY id", max_rows=12)
    assert len(first.rows) == 12 and first.next_offset == 12
    last = sandbox.query(g, "SELECT id FROM appointment ORDER BY id", offset=24, max_rows=12)
    assert len(last.rows) == 6 and last.next_offset is None
    with pytest.raises(InvalidInput):
        sandbox.query(g, "SELECT 1", max_rows=201)


def test_errors_do_not_echo_literals(sandbox: SqlSandbox) -> None:
    for sql in (
        'SELECT * FROM appointment WHERE family = "Smith"',
        "SELECT * FROM appointment WHERE status = 'Smith",
        "SELECT Smith FROM appointment",
        "SELECT * FROM Smith_Alice",
        "SELECT Smith('x')",
        "SELECT 'Smith' FROM appointment WHERE",
        "SELECT * FROM appointment WHERE status = 'Smith' GROUP",
    ):
        err = refused(sandbox, USER, sql)
        assert "Smith" not in err.message, (sql, err.message)
        assert "Traceback" not in err.message


def test_error_names_position_and_allowed_views(sandbox: SqlSandbox) -> None:
    err = refused(sandbox, USER, "SELECT nosuchcolumn FROM appointment")
    assert "character 7" in err.message
    err = refused(sandbox, USER, "SELECT * FROM appointments")
    assert "appointment" in err.message and "condition" in err.message
