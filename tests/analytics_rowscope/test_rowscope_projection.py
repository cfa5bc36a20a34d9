"""Field projections reach the derived tables: a summary column computed from an element the role does not
receive is hidden like the element's own view column."""

from __future__ import annotations

from fhirgate.analytics.sql.catalog import builtin_views
from fhirgate.analytics.sql.policy import StoreFacts, grant_view
from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.rowscope import RowScope
from fhirgate.core.policy.rules import FieldRule
from fhirgate.core.policy.scopes import ScopeSet

USER = Principal(sub="u", issuer="urn:t", scopes=ScopeSet.parse("user/*.rs"), client_id="c")
# The summary is current and no label is present: it is offered, so only projections decide its columns.
FACTS = StoreFacts(
    looked_up=frozenset({"42CFRPart2", "BH", "ETH", "GDIS", "HIV", "PSY", "R", "SDV", "SEX", "STD", "V"}),
    current=frozenset({"patient_activity"}),
)


def test_patient_activity_hides_columns_of_withheld_elements() -> None:
    info = builtin_views()["patient_activity"]
    open_scope = RowScope()
    offered = grant_view(USER, info, open_scope, facts=FACTS)
    assert offered.allowed, offered.detail
    assert offered.hidden_columns == ()
    no_status = RowScope(fields={"Patient": FieldRule(include=frozenset({"name", "gender"}))})
    hidden = grant_view(USER, info, no_status, facts=FACTS).hidden_columns
    assert "active" in hidden and "lifetime_billed" not in hidden
    no_billing = RowScope(fields={"Claim": FieldRule(exclude=frozenset({"item"}))})
    assert grant_view(USER, info, no_billing, facts=FACTS).hidden_columns == ("lifetime_billed",)
