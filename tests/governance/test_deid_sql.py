"""De-identified SQL for the analyst role: every output scanned for the 18 Safe Harbor identifier kinds."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest
from governance_support import Facts, ctx, who

from fhirgate.errors import AccessDenied, InvalidInput
from fhirgate.service.gateway import Gateway

ANALYST = who(role="analyst", sub="analyst-1")
VIEWS = (
    "patient", "practitioner", "appointment", "encounter", "condition", "observation", "medication_request",
    "immunization", "allergy", "claim_line", "invoice_line", "coverage", "patient_activity", "billing_daily",
    "appointment_daily",
)  # fmt: skip
FULL_DATE = re.compile(r"\b(19|20)\d{2}-\d{2}-\d{2}")


def _all_rows(gateway: Gateway, sql: str, p: Any = ANALYST) -> list[dict[str, Any]]:
    pages, cursor = [], None
    while True:
        page = gateway.query_sql(ctx(p), sql, max_rows=200, cursor=cursor)
        pages.append(page)
        cursor = page["page"]["next_cursor"]
        if cursor is None:
            return pages


def _identifiers(facts: Facts) -> set[str]:
    """Identifier values of the 18 kinds taken from the generated data (A names, B streets/cities/ZIPs,
    D-F telecom, G-K/R identifier values, N URLs), at least 4 characters long."""
    found: set[str] = set()

    def add(value: Any) -> None:
        if isinstance(value, str) and len(value) >= 4:
            found.add(value)

    for body in facts.bodies.values():
        for name in body.get("name", []) if isinstance(body.get("name"), list) else []:
            add(name.get("family"))
            for given in name.get("given", []):
                add(given)
        for addr in body.get("address", []) if isinstance(body.get("address"), list) else []:
            for line in addr.get("line", []):
                add(line)
            add(addr.get("city"))
            add(addr.get("postalCode"))
        for tel in body.get("telecom", []):
            add(tel.get("value"))
        for ident in body.get("identifier", []):
            add(ident.get("value"))
        add(body.get("url"))
    return found


def test_every_view_is_de_identified(gateway: Gateway, facts: Facts) -> None:
    outputs = [page for view in VIEWS for page in _all_rows(gateway, f"SELECT * FROM {view}")]
    rows = sum(len(p["rows"]) for p in outputs)
    assert rows > 1000 and all("deidentified" in p for p in outputs)
    text = orjson.dumps([p["rows"] for p in outputs]).decode()
    leaked = sorted(v for v in _identifiers(facts) if orjson.dumps(v).decode() in text)
    assert not leaked, leaked[:10]
    assert not FULL_DATE.search(text), FULL_DATE.search(text)
    real_ids = {r.split("/", 1)[1] for r in facts.bodies}
    assert not [i for i in real_ids if f'"{i}"' in text][:5]
    patient = next(p for p in outputs if p["views"] == ["patient"])
    cols = [c["name"] for c in patient["columns"]]
    first = dict(zip(cols, patient["rows"][0], strict=True))
    assert first["family"] is None and first["given"] is None
    assert first["id"].startswith("p-") and (first["birth_date"] is None or len(str(first["birth_date"])) <= 4)


def test_small_counts_are_suppressed_and_pseudonyms_are_per_principal(gateway: Gateway) -> None:
    rows = gateway.query_sql(ctx(ANALYST), "SELECT gender, count(*) AS n FROM patient GROUP BY gender")["rows"]
    assert all((isinstance(n, int) and n >= 11) or n == "<11" for _, n in rows)
    tiny = gateway.query_sql(ctx(ANALYST), "SELECT count(*) FROM patient WHERE id = (SELECT min(id) FROM patient)")
    assert tiny["rows"] == [["<11"]] and tiny["deidentified"]["suppressed_cells"] == 1
    sql = "SELECT id FROM patient ORDER BY id LIMIT 5"
    mine = gateway.query_sql(ctx(ANALYST), sql)["rows"]
    again = gateway.query_sql(ctx(ANALYST), sql)["rows"]
    other = gateway.query_sql(ctx(who(role="analyst", sub="analyst-2")), sql)["rows"]
    assert mine == again and mine != other


def test_the_deid_function_cannot_be_called_from_sql(gateway: Gateway, facts: Facts) -> None:
    pid = sorted(r.split("/")[1] for r in facts.bodies if r.startswith("Patient/"))[0]
    for sql in (
        f"SELECT fg_deid('id:Patient', '{pid}')",
        f"WITH x AS (SELECT fg_deid('string', '{pid}') AS v) SELECT v FROM x",
        "SELECT * FROM main.patient",
    ):
        with pytest.raises((InvalidInput, AccessDenied)) as info:
            gateway.query_sql(ctx(ANALYST), sql)
        assert "fg_deid" in info.value.message or "main.appointment" in info.value.message


def test_identified_callers_see_real_values(gateway: Gateway, facts: Facts) -> None:
    rows = gateway.query_sql(ctx(who()), "SELECT id, family FROM patient ORDER BY id LIMIT 1")
    assert rows["rows"][0][0].startswith("pat-") and rows["rows"][0][1] and "deidentified" not in rows
