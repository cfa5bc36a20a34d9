"""Proposal validation, canonical JSON and hashes; the field-level diff."""

from __future__ import annotations

import orjson
import pytest
from writes_helpers import START, appointment, make_proposal, principal

from fhirgate.core.writes.diff import diff_resources, render_diff
from fhirgate.core.writes.proposal import Proposal, canonical_json
from fhirgate.errors import InvalidInput


def test_canonical_json_is_sorted_compact_and_round_trips() -> None:
    p = make_proposal()
    data = p.to_json()
    assert data == canonical_json(orjson.loads(data))
    assert b" " not in data.replace(b'"PATADMIN"', b"")  # no whitespace between tokens
    assert list(orjson.loads(data)) == sorted(orjson.loads(data))
    assert Proposal.from_json(data) == p


def test_content_hash_ignores_state_but_binds_the_change() -> None:
    p = make_proposal()
    decided = p.decided_as("approved", "bob", None, START)
    assert decided.content_hash() == p.content_hash()
    other = make_proposal(proposed=appointment("noshow", version=None))
    assert other.content_hash() != p.content_hash()
    assert make_proposal(who=principal("mallory")).content_hash() != p.content_hash()


def test_request_fingerprint_ignores_new_id_for_creates() -> None:
    body = appointment(version=None)
    a = make_proposal(kind="create", proposed=body, pid="prop-a")
    b = make_proposal(kind="create", proposed={**body, "id": "appt-other"}, pid="prop-b")
    assert a.request_fingerprint() == b.request_fingerprint()
    c = make_proposal(kind="create", proposed={**body, "status": "proposed"}, pid="prop-c")
    assert c.request_fingerprint() != a.request_fingerprint()


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"kind": "upsert"}, "kind"),
        ({"id": "bad id!"}, "id"),
        ({"target_id": "other"}, "resource.id"),
        ({"resource_type": "Patient"}, "resource.resourceType"),
        ({"base_version": "2"}, "base_version"),
        ({"base_version": None}, "base_version"),
        ({"expires": "2026-06-01T08:00:00.000Z"}, "expires"),
        ({"status": "done"}, "status"),
        ({"status": "approved"}, "decider"),
        ({"risk": "medium"}, "risk"),
        ({"risk_reasons": ("Not A Code",)}, "risk_reasons"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"decider": "bob"}, "decider"),
        ({"purpose": "line\nbreak"}, "purpose"),
    ],
)
def test_invalid_proposals_name_the_parameter(change: dict[str, object], param: str) -> None:
    base = make_proposal().to_dict()
    base.update(change)
    with pytest.raises(InvalidInput) as info:
        Proposal.from_dict(base)
    assert info.value.param == param


def test_from_dict_rejects_unknown_and_missing_members() -> None:
    raw = make_proposal().to_dict()
    with pytest.raises(InvalidInput):
        Proposal.from_dict({**raw, "approved_by_admin": True})
    del raw["kind"]
    with pytest.raises(InvalidInput):
        Proposal.from_dict(raw)
    with pytest.raises(InvalidInput):
        Proposal.from_json(b"{not json")


def test_delete_needs_current_and_no_resource() -> None:
    p = make_proposal(kind="delete", current=appointment())
    assert p.resource is None and p.base_version == "3"
    raw = p.to_dict()
    raw["resource"] = appointment()
    with pytest.raises(InvalidInput):
        Proposal.from_dict(raw)


def test_diff_lists_paths_old_and_new_and_ignores_server_meta() -> None:
    old = appointment("booked", version="3")
    new = appointment("cancelled", version="4", cancelationReason={"text": "patient request"})
    new["participant"][0]["status"] = "declined"
    del new["end"]
    changes = diff_resources(old, new)
    by_path = {c.path: c for c in changes}
    assert set(by_path) == {"status", "cancelationReason", "participant[0].status", "end"}
    assert (by_path["status"].op, by_path["status"].old, by_path["status"].new) == ("changed", "booked", "cancelled")
    assert by_path["end"].op == "removed"
    assert by_path["cancelationReason"].op == "added"
    text = render_diff(changes)
    assert '~ status: "booked" → "cancelled"' in text
    assert "- end:" in text and "+ cancelationReason:" in text
    assert by_path["end"].to_dict() == {"path": "end", "op": "removed", "old": "2026-06-02T09:20:00Z"}


def test_diff_of_create_and_delete_and_type_changes() -> None:
    body = appointment(version=None)
    assert {c.op for c in diff_resources(None, body)} == {"added"}
    assert {c.op for c in diff_resources(body, None)} == {"removed"}
    assert diff_resources(body, body) == []
    assert render_diff([]) == "(no changes)"
    # JSON true and 1 differ, as do a list growing and shrinking.
    changes = diff_resources({"a": 1, "l": [1, 2]}, {"a": True, "l": [1]})
    assert [(c.path, c.op) for c in changes] == [("a", "changed"), ("l[1]", "removed")]


def test_diff_values_are_cut_for_display() -> None:
    text = render_diff(diff_resources({"comment": "x"}, {"comment": "y" * 1000}))
    assert len(text) < 400 and text.endswith("…")
