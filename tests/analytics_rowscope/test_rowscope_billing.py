"""billing_daily under a RowScope: offered only when, for Claim and Invoice alike, the excluded patients are
exactly the opted-out patients it leaves out and the labels it leaves out are exactly those withheld; its
numbers then equal the filtered line views', and service_volume gives the same answer from it as from a scan."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from rowscope_support import TODAY, Practice

from fhirgate.analytics.sql.policy import StoreFacts, ViewGrant, grant_views
from fhirgate.analytics.sql.sandbox import SqlSandbox
from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.rowscope import RowScope
from fhirgate.core.policy.scopes import ScopeSet
from fhirgate.service import reports
from fhirgate.service.auditing import Trail

USER = Principal(sub="t", issuer="urn:test", scopes=ScopeSet.parse("user/*.rs"), client_id="tests")
# The default sensitive set billing_daily leaves out, written out (not imported from fhirgate).
SENSITIVE = frozenset({"R", "V", "ETH", "PSY", "HIV", "STD", "SDV", "SEX", "BH", "GDIS", "42CFRPart2"})
VIEW = "billing_daily"


@pytest.fixture(scope="module")
def box(whole: Practice) -> Iterator[SqlSandbox]:
    sandbox = whole.sandbox()
    yield sandbox
    sandbox.close()


def grant(box: SqlSandbox, scope: RowScope | None, facts: StoreFacts | None = None, who: Principal = USER) -> ViewGrant:
    labels = scope.withheld_labels if scope is not None else frozenset()
    return grant_views(who, box.catalog(), scope, facts=facts or box.facts(labels))[VIEW]


def staff(whole: Practice, **more: Any) -> RowScope:
    """The practice_staff shape: opted-out patients excluded, the sensitive labels withheld."""
    args: dict[str, Any] = {
        "excluded_patients": whole.optouts,
        "optout_patients": whole.optouts,
        "withheld_labels": SENSITIVE,
    }
    return RowScope(**{**args, **more})


def test_facts_know_what_billing_daily_leaves_out(whole: Practice, box: SqlSandbox) -> None:
    facts = box.facts(SENSITIVE)
    assert len(whole.optouts) == 2
    assert facts.billing_optouts == whole.optouts == facts.rollup_optouts
    assert VIEW in facts.current and VIEW in box.catalog()
    assert {"PSY", "R"} <= facts.present(("Claim",))  # the demo labels psychotherapy claims


def test_offered_to_the_caller_whose_exclusions_it_matches(whole: Practice, box: SqlSandbox) -> None:
    g = grant(box, staff(whole))
    assert g.allowed, g.detail
    assert "line items of patients who opted out" in g.detail and "PSY" in g.detail
    assert not any(p in g.detail for p in whole.optouts)
    assert g.rows is not None and g.rows.where() == ""  # nothing to filter: the table already leaves them out
    # Withholding more labels that no Claim or Invoice carries changes nothing.
    assert grant(box, staff(whole, withheld_labels=SENSITIVE | {"MH", "SUD"})).allowed
    # No scope and no facts: the SMART scopes alone decide (the behaviour before governance).
    assert grant_views(USER, box.catalog())[VIEW].allowed


def test_refused_when_the_patients_differ(whole: Practice, box: SqlSandbox) -> None:
    opt, other = whole.optouts, whole.patients()[0]
    assert other not in opt
    cases = {
        "one more patient excluded": staff(whole, excluded_patients=opt | {other}),
        "one more patient excluded for Invoice": staff(whole, excluded_types={"Invoice": frozenset({other})}),
        "one more patient excluded for Claim": staff(whole, excluded_types={"Claim": frozenset({other})}),
        # the union over Claim and Invoice is the opt-outs, but Invoice rows of the opted-out would be kept
        "opt-outs excluded for Claim only": staff(whole, excluded_patients=frozenset(), excluded_types={"Claim": opt}),
        "care team": staff(whole, only_patients=frozenset(whole.patients()[:5])),
        "sees everyone": RowScope(withheld_labels=SENSITIVE),
    }
    for why, scope in cases.items():
        g = grant(box, scope)
        assert not g.allowed, why
        assert g.reason == "governance.not_in_view", why
        assert "claim_line and invoice_line" in g.detail, why
    # Both types exclude exactly the opt-outs, given per type: fits.
    per_type = staff(whole, excluded_patients=frozenset(), excluded_types={"Claim": opt, "Invoice": opt})
    assert grant(box, per_type).allowed


def test_refused_when_the_labels_differ(whole: Practice, box: SqlSandbox) -> None:
    sees_psy = staff(whole, withheld_labels=SENSITIVE - {"PSY"})
    g = grant(box, sees_psy)
    assert not g.allowed and g.reason == "governance.labels_in_summary"
    assert "PSY" in g.detail and "Claim, Invoice" in g.detail
    assert not grant(box, staff(whole, withheld_labels=frozenset())).allowed
    assert not grant(box, staff(whole, withheld_labels=SENSITIVE | {"NORDSCLCD"})).allowed  # kept, yet withheld
    # A label present on Invoices only counts too (both types are summarized).
    real = box.facts(SENSITIVE)
    labels = {**real.labels, "Invoice": frozenset({"ETH"}), "Claim": real.labels.get("Claim", frozenset()) - {"ETH"}}
    facts = StoreFacts(real.rollup_optouts, labels, real.looked_up, real.current, real.billing_optouts)
    assert not grant(box, staff(whole, withheld_labels=SENSITIVE - {"ETH"}), facts).allowed
    assert grant(box, staff(whole), facts).allowed


def test_unknown_or_outdated_facts_fail_closed(whole: Practice, box: SqlSandbox) -> None:
    real = box.facts(SENSITIVE)
    for why, facts in {
        "nothing known": StoreFacts(),
        "billing set unknown": StoreFacts(real.rollup_optouts, real.labels, real.looked_up, real.current, None),
        "billing set differs": StoreFacts(
            real.rollup_optouts, real.labels, real.looked_up, real.current, frozenset({whole.patients()[0]})
        ),
        "older version": StoreFacts(
            real.rollup_optouts, real.labels, real.looked_up, real.current - {VIEW}, real.billing_optouts
        ),
        "PSY not looked up": StoreFacts(
            real.rollup_optouts, real.labels, real.looked_up - {"PSY"}, real.current, real.billing_optouts
        ),
    }.items():
        assert not grant(box, staff(whole), facts).allowed, why
    # The rollup's set alone is not taken for billing_daily's.
    only_rollup = StoreFacts(real.rollup_optouts, real.labels, real.looked_up, real.current)
    assert not grant(box, staff(whole), only_rollup).allowed


def test_refused_by_scopes_and_role_types(whole: Practice, box: SqlSandbox) -> None:
    patient = whole.patients()[0]
    confined = Principal(
        sub="p", issuer="urn:test", scopes=ScopeSet.parse("launch/patient patient/*.rs"), client_id="t", patient=patient
    )
    g = grant(box, staff(whole), who=confined)
    assert not g.allowed and g.reason == "compartment.not_in_view"
    no_invoice = Principal(sub="t", issuer="urn:test", scopes=ScopeSet.parse("user/Claim.rs"), client_id="t")
    assert not grant(box, staff(whole), who=no_invoice).allowed
    no_invoice_role = staff(whole, allowed_types=frozenset({"Claim", "Appointment"}))
    g = grant(box, no_invoice_role)
    assert not g.allowed and g.reason == "role.type_not_allowed"


def _rows(box: SqlSandbox, scope: RowScope, sql: str) -> list[Any]:
    """Every row of `sql` (paged) over the views `scope` leaves the caller."""
    g = grant_views(USER, box.catalog(), scope, facts=box.facts(scope.withheld_labels))
    out: list[Any] = []
    offset: int | None = 0
    while offset is not None:
        page = box.query(g, sql, offset=offset, max_rows=200)
        out += page.rows
        offset = page.next_offset
    return out


def test_numbers_equal_the_filtered_line_views(whole: Practice, box: SqlSandbox) -> None:
    scope = staff(whole)
    billed = "status NOT IN ('draft', 'cancelled', 'entered-in-error')"
    for source, view, column in (("claim", "claim_line", "service_date"), ("invoice", "invoice_line", "date")):
        fast = _rows(
            box, scope, f"SELECT day, service_display, amount, lines FROM billing_daily WHERE source = '{source}'"
        )
        slow = _rows(
            box,
            scope,
            f"SELECT substr({column}, 1, 10) AS d, service_display, sum(amount), count(*) FROM {view} "
            f"WHERE {billed} GROUP BY d, service_display",
        )
        assert fast, source
        norm = lambda rows: sorted((d, s, None if a is None else round(a, 6), n) for d, s, a, n in rows)  # noqa: E731
        assert norm(fast) == norm(slow), source
    everyone = _rows(box, RowScope(), "SELECT count(*) FROM claim_line WHERE " + billed)[0][0]
    assert _rows(box, scope, "SELECT sum(lines) FROM billing_daily WHERE source = 'claim'")[0][0] < everyone


def _service_volume(whole: Practice, scope: RowScope, params: dict[str, Any], facts: StoreFacts | None) -> Any:
    sandbox = whole.sandbox()
    if facts is not None:
        sandbox.facts = lambda labels=frozenset(): facts  # type: ignore[method-assign]
    try:
        given = {"today": TODAY.isoformat(), "limit": 200, **params}
        return reports.run_report(
            SimpleNamespace(sandbox=sandbox),  # type: ignore[arg-type]
            USER,
            Trail("report"),
            "service_volume",
            given,
            scope=scope,
        )
    finally:
        sandbox.close()


@pytest.mark.parametrize(
    "params",
    [{"period": "last_90_days"}, {"period": "last_30_days"}, {"start": "2025-07-01", "end": "2026-07-01"}],
    ids=["90d", "30d", "year"],
)
def test_service_volume_reads_billing_daily_when_offered(whole: Practice, params: dict[str, Any]) -> None:
    scope = staff(whole)
    fast = _service_volume(whole, scope, params, None)
    assert VIEW in fast["views"] and VIEW in fast["definition"]["sources"]
    box = whole.sandbox()
    try:
        real = box.facts(SENSITIVE)
    finally:
        box.close()
    slow = _service_volume(whole, scope, params, StoreFacts(None, real.labels, real.looked_up, real.current, None))
    assert VIEW not in slow["views"] and "claim_line" in slow["views"]
    assert (fast["rows"], fast["headline"], fast["summary"]) == (slow["rows"], slow["headline"], slow["summary"])
    assert fast["summary"]["revenue"] > 0
