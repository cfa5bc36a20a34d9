"""The SQL use cases through the Gateway: one audit record per call, digests not SQL, cursors, describe/list."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sql_support import FakeStore, ListSink, principal

from fhirgate.errors import AccessDenied, InvalidInput
from fhirgate.service.analytics import sql_digest
from fhirgate.service.context import RequestContext
from fhirgate.service.gateway import Gateway

USER = principal("user/*.rs")
P1 = principal("launch/patient patient/*.rs", patient="p1", sub="patient-app")


@pytest.fixture
def env(store_path: Path) -> Iterator[tuple[Gateway, ListSink]]:
    sink = ListSink()
    gw = Gateway(FakeStore(store_path), sink, b"s" * 32)  # type: ignore[arg-type]
    yield gw, sink
    gw.close()


def ctx(p: object, name: str = "query_sql") -> RequestContext:
    return RequestContext(p, name=name)  # type: ignore[arg-type]


SQL = "SELECT id, patient_id FROM appointment WHERE patient_id = 'p1' ORDER BY id"


def test_query_is_audited_once_with_digest_views_rows_and_no_sql(env: tuple[Gateway, ListSink]) -> None:
    gw, sink = env
    c = ctx(USER)
    out = gw.query_sql(c, SQL, max_rows=4)
    assert c.audited and len(sink.records) == 1
    rec = sink.records[0]
    assert rec.outcome == "success"
    assert rec.interaction == "sql.query"
    assert rec.query == "?appointment=*"
    assert f"sql_sha256={sql_digest(SQL)}" in (rec.reason or "")
    assert "rows=4" in (rec.reason or "")
    assert "p1" not in rec.to_json().decode()  # the literal in the SQL is not recorded
    assert rec.patients == ()  # practice-wide: no single patient the rows were confined to
    assert [c["name"] for c in out["columns"]] == ["id", "patient_id"]
    assert out["page"]["returned"] == 4 and out["page"]["next_cursor"]


def test_patient_confined_query_records_the_patient(env: tuple[Gateway, ListSink]) -> None:
    gw, sink = env
    out = gw.query_sql(ctx(P1), "SELECT count(*) FROM appointment")
    assert out["rows"] == [[10]]
    assert out["confined_to_patient"] == "p1"
    assert sink.records[-1].patients == ("p1",)


def test_refusals_are_audited_once_as_denied_or_invalid(env: tuple[Gateway, ListSink]) -> None:
    gw, sink = env
    with pytest.raises(AccessDenied):
        gw.query_sql(ctx(P1), "SELECT * FROM main.appointment")
    with pytest.raises(InvalidInput):
        gw.query_sql(ctx(P1), "SELECT 1; SELECT 2")
    with pytest.raises(InvalidInput):
        gw.query_sql(ctx(P1), "SELEC 'Smith'")
    assert [r.outcome for r in sink.records] == ["denied", "invalid", "invalid"]
    assert sink.records[0].reason is not None and sink.records[0].reason.startswith("sql.table_denied")
    for rec in sink.records:
        assert "Smith" not in rec.to_json().decode()
        assert "sql_sha256=" in (rec.reason or "")


def test_paging_with_cursor_bound_to_sql_and_principal(env: tuple[Gateway, ListSink]) -> None:
    gw, _ = env
    sql = "SELECT id FROM appointment ORDER BY id"
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        page = gw.query_sql(ctx(USER), sql, max_rows=7, cursor=cursor)
        seen += [r[0] for r in page["rows"]]
        cursor = page["page"]["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 30 and len(set(seen)) == 30
    first = gw.query_sql(ctx(USER), sql, max_rows=7)["page"]["next_cursor"]
    with pytest.raises(InvalidInput, match="different arguments"):
        gw.query_sql(ctx(USER), sql + " DESC", max_rows=7, cursor=first)
    with pytest.raises(InvalidInput, match="different arguments"):
        gw.query_sql(ctx(USER), sql, max_rows=8, cursor=first)
    other = principal("user/*.rs", sub="someone-else")
    with pytest.raises(InvalidInput, match="different caller"):
        gw.query_sql(ctx(other), sql, max_rows=7, cursor=first)
    with pytest.raises(InvalidInput):
        gw.query_sql(ctx(USER), sql, max_rows=7, cursor=first[:-2] + "AA")


def test_list_views_says_what_is_available_and_why_not(env: tuple[Gateway, ListSink]) -> None:
    gw, sink = env
    out = gw.list_views(ctx(P1, "list_views"))
    views = {v["name"]: v for v in out["views"]}
    assert set(views) == {"appointment", "condition", "patient", "practitioner"}  # only materialized tables
    assert views["appointment"]["available"] and "Patient/p1" in views["appointment"]["access"]
    assert not views["practitioner"]["available"]
    assert "start_time" in views["appointment"]["column_names"]
    assert len(sink.records) == 1 and sink.records[0].outcome == "success"
    who = principal("user/Appointment.rs")
    views = {v["name"]: v for v in gw.list_views(ctx(who, "list_views"))["views"]}
    assert not views["condition"]["available"] and views["condition"]["required_scope"] == "user/Condition.rs"


def test_describe_view_gives_columns_and_restriction(env: tuple[Gateway, ListSink]) -> None:
    gw, sink = env
    out = gw.describe_view(ctx(P1, "describe_view"), "appointment")
    cols = {c["name"]: c for c in out["columns"]}
    assert "_rid" not in cols
    assert cols["start_time"]["fhir_type"] == "instant" and cols["start_time"]["type"] == "TEXT"
    assert cols["minutes"]["type"] == "INTEGER"
    assert "offset" in cols["start_time"]["description"]
    assert out["restriction"] == {
        "kind": "patient",
        "patient": "p1",
        # The default policy's patient role sees its own sensitive data except V and SDV (docs/policy.md).
        "detail": "only rows where patient_id = 'p1' (your access is confined to Patient/p1); resources labelled "
        "SDV, V are withheld",
    }
    staff = gw.describe_view(ctx(USER, "describe_view"), "appointment")["restriction"]
    # A practice-wide user (default policy role practice_staff) sees every row except sensitive-labelled ones.
    assert staff["kind"] == "governed" and "PSY" in staff["detail"] and "withheld" in staff["detail"]
    with pytest.raises(InvalidInput, match="appointment"):
        gw.describe_view(ctx(USER, "describe_view"), "appointments")
    assert [r.outcome for r in sink.records] == ["success", "success", "invalid"]
