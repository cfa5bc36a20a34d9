"""The proposal store: idempotency, expiry, decisions, row signatures and confirmation tokens — and attacks on them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest
from writes_helpers import MAC_KEY, START, Clock, appointment, make_proposal, principal

from fhirgate.config import DataDir
from fhirgate.core.writes.proposal import Proposal
from fhirgate.errors import AccessDenied, Conflict, InvalidInput, NotFound, StoreError
from fhirgate.writes.approvals import ProposalStore, open_proposals


def high_risk(**kw: object) -> Proposal:
    """An appointment marked entered-in-error: high risk."""
    p = make_proposal(proposed=appointment("entered-in-error", version=None), **kw)  # type: ignore[arg-type]
    assert p.high_risk
    return p


def edit_row(path: Path, sql: str, *params: object) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(sql, params)
    conn.close()


# -- create / idempotency -------------------------------------------------------------------------


def test_create_then_get_round_trips(store: ProposalStore) -> None:
    p = make_proposal()
    stored, created = store.create(p)
    assert created and stored == p
    assert store.get(p.id) == p
    with pytest.raises(NotFound):
        store.get("prop-none")
    with pytest.raises(InvalidInput):
        store.get("../etc")


def test_same_idempotency_key_returns_the_existing_proposal(store: ProposalStore) -> None:
    first, _ = store.create(make_proposal(pid="prop-1"))
    again, created = store.create(make_proposal(pid="prop-2"))
    assert not created and again.id == first.id
    assert [p.id for p in store.list()] == ["prop-1"]


def test_idempotency_key_is_per_principal(store: ProposalStore) -> None:
    store.create(make_proposal(pid="prop-1"))
    _, created = store.create(make_proposal(pid="prop-2", who=principal("bob")))
    assert created
    assert {p.id for p in store.list()} == {"prop-1", "prop-2"}
    assert [p.id for p in store.list(principal=principal("bob").subject_key)] == ["prop-2"]


def test_reusing_a_key_for_a_different_request_is_a_conflict(store: ProposalStore) -> None:
    store.create(make_proposal(pid="prop-1"))
    with pytest.raises(Conflict, match="idempotency key"):
        store.create(make_proposal(pid="prop-2", proposed=appointment("noshow", version=None)))


def test_duplicate_id_and_non_pending_creates_are_refused(store: ProposalStore) -> None:
    store.create(make_proposal(pid="prop-1"))
    with pytest.raises(Conflict):
        store.create(make_proposal(pid="prop-1", idem="other"))
    decided = make_proposal(pid="prop-9", idem="x").decided_as("approved", "bob", None, START)
    with pytest.raises(InvalidInput):
        store.create(decided)


# -- expiry ------------------------------------------------------------------------------------------


def test_proposals_expire_by_time(store: ProposalStore, clock: Clock) -> None:
    store.create(make_proposal())
    clock.advance(minutes=59)
    assert store.get("prop-1").status == "pending"
    clock.advance(minutes=1)
    assert store.get("prop-1").status == "expired"
    with pytest.raises(Conflict, match=r"approval\.expired"):
        store.decide("prop-1", "bob", True)
    assert [p.id for p in store.list(status="expired")] == ["prop-1"]
    assert store.list(status="pending") == []


def test_list_expires_stale_rows_and_validates_filters(store: ProposalStore, clock: Clock) -> None:
    store.create(make_proposal(pid="prop-1", idem="a"))
    clock.advance(minutes=30)
    store.create(make_proposal(pid="prop-2", idem="b", now=clock.now))
    clock.advance(minutes=31)
    assert [p.id for p in store.list(status="pending")] == ["prop-2"]
    with pytest.raises(InvalidInput):
        store.list(status="done")
    with pytest.raises(InvalidInput):
        store.list(limit=0)


# -- decisions ---------------------------------------------------------------------------------------


def test_self_approval_of_high_risk_is_refused_in_every_spelling(store: ProposalStore) -> None:
    p = high_risk()
    store.create(p)
    for name in (p.subject_key, "alice", "ALICE", "  alice "):
        with pytest.raises(AccessDenied) as info:
            store.decide(p.id, name, True)
        assert info.value.reason == "approval.self_approval"
    assert store.get(p.id).status == "pending"
    approved = store.decide(p.id, "bob", True, "checked with the patient")
    assert (approved.status, approved.decider, approved.decision_reason) == (
        "approved",
        "bob",
        "checked with the patient",
    )


def test_proposer_may_withdraw_and_may_approve_low_risk(store: ProposalStore) -> None:
    store.create(high_risk())
    assert store.decide("prop-1", "alice", False, "withdrawn").status == "rejected"
    store.create(make_proposal(pid="prop-2", idem="low"))
    assert store.decide("prop-2", "alice", True).status == "approved"


def test_double_decision_is_refused(store: ProposalStore) -> None:
    store.create(high_risk())
    store.decide("prop-1", "bob", True)
    with pytest.raises(Conflict, match=r"approval\.decided"):
        store.decide("prop-1", "carol", False, "too late")
    with pytest.raises(Conflict, match=r"approval\.decided"):
        store.decide("prop-1", "carol", True)
    assert store.get("prop-1").decider == "bob"


@pytest.mark.parametrize(
    ("decider", "approve", "reason", "param"),
    [
        ("", True, None, "decider"),
        ("bob\n", True, None, "decider"),
        ("bob", False, None, "reason"),
        ("bob", True, " ", "reason"),
    ],
)
def test_bad_decisions_are_invalid_input(
    store: ProposalStore, decider: str, approve: bool, reason: str | None, param: str
) -> None:
    store.create(make_proposal())
    with pytest.raises(InvalidInput) as info:
        store.decide("prop-1", decider, approve, reason)
    assert info.value.param == param


# -- row integrity -----------------------------------------------------------------------------------


def test_edited_row_is_detected_on_read_and_by_verify(store: ProposalStore, store_path: Path) -> None:
    store.create(high_risk())
    body = orjson.loads(store._select("WHERE id='prop-1'")[0][5])
    body["risk"] = "low"  # downgrade to allow self-confirmation
    body["risk_reasons"] = ["risk.administrative"]
    edit_row(
        store_path,
        "UPDATE proposals SET body=? WHERE id='prop-1'",
        orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode(),
    )
    with pytest.raises(StoreError, match="integrity"):
        store.get("prop-1")
    with pytest.raises(StoreError):
        store.list()
    with pytest.raises(StoreError):
        store.decide("prop-1", "alice", True)
    checked, problems = store.verify()
    assert checked == 1 and [x.id for x in problems] == ["prop-1"]


def test_forged_approval_column_is_detected(store: ProposalStore, store_path: Path) -> None:
    store.create(high_risk())
    edit_row(store_path, "UPDATE proposals SET status='approved' WHERE id='prop-1'")
    with pytest.raises(StoreError, match="disagree"):
        store.get("prop-1")


def test_forged_row_signed_with_another_key_is_detected(store: ProposalStore, store_path: Path) -> None:
    other = ProposalStore(store_path.with_name("other.db"), mac_key=b"x" * 32)
    approved = high_risk(pid="prop-7", idem="z").decided_as("approved", "bob", None, START)
    body = approved.to_json()
    edit_row(
        store_path,
        "INSERT INTO proposals(id, subject_key, idempotency_key, status, created, body, mac) VALUES (?,?,?,?,?,?,?)",
        approved.id,
        approved.subject_key,
        approved.idempotency_key,
        approved.status,
        approved.created,
        body.decode(),
        other.row_mac(approved.id, body),
    )
    other.close()
    with pytest.raises(StoreError, match="integrity"):
        store.get("prop-7")


def test_row_copied_under_another_id_is_detected(store: ProposalStore, store_path: Path) -> None:
    store.create(make_proposal())
    edit_row(
        store_path,
        "INSERT INTO proposals(id, subject_key, idempotency_key, status, created, body, mac) "
        "SELECT 'prop-copy', subject_key, 'copy', status, created, body, mac FROM proposals WHERE id='prop-1'",
    )
    with pytest.raises(StoreError):
        store.get("prop-copy")


def test_a_good_store_verifies_and_keys_come_from_the_data_dir(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "data")
    with open_proposals(data) as s:
        s.create(make_proposal())
        assert s.verify() == (1, [])
    assert (data.path / "proposals.db").exists()
    assert (data.keys_dir / "proposals.secret").stat().st_mode & 0o777 == 0o600
    with pytest.raises(StoreError):
        ProposalStore(tmp_path / "x.db", mac_key=b"short")


# -- confirmation tokens -------------------------------------------------------------------------


def test_confirmation_token_approves_once(store: ProposalStore) -> None:
    p, _ = store.create(make_proposal())
    alice = principal()
    token = store.confirmation_token(p, alice)
    approved = store.check_confirmation(token, p, alice)
    assert (approved.status, approved.decider) == ("approved", alice.subject_key)
    with pytest.raises(AccessDenied) as info:
        store.check_confirmation(token, p, alice)
    assert info.value.reason == "confirmation.replayed"


def test_token_for_another_principal_or_client_is_refused(store: ProposalStore) -> None:
    p, _ = store.create(make_proposal())
    token = store.confirmation_token(p, principal())
    for other in (principal("mallory"), principal(client="other-app"), principal(client=None)):
        with pytest.raises(AccessDenied) as info:
            store.check_confirmation(token, p, other)
        assert info.value.reason == "confirmation.forged"
    with pytest.raises(AccessDenied) as issued:
        store.confirmation_token(p, principal("mallory"))
    assert issued.value.reason == "confirmation.wrong_principal"
    assert store.get(p.id).status == "pending"


def test_forged_and_malformed_tokens_are_refused(store: ProposalStore) -> None:
    p, _ = store.create(make_proposal())
    alice = principal()
    token = store.confirmation_token(p, alice)
    head, mac = token.rsplit(".", 1)
    flipped = head + "." + ("0" if mac[0] != "0" else "1") + mac[1:]
    later = token.split(".")
    later[3] = str(int(later[3]) + 3_600_000)  # extend the expiry
    cases = {
        flipped: "confirmation.forged",
        ".".join(later): "confirmation.forged",
        "v1.prop-1." + "0" * 32 + ".1." + "0" * 64: "confirmation.forged",
        "garbage": "confirmation.malformed",
        token.replace("prop-1", "prop-2"): "confirmation.wrong_proposal",
    }
    for bad, reason in cases.items():
        with pytest.raises(AccessDenied) as info:
            store.check_confirmation(bad, p, alice)
        assert info.value.reason == reason, bad
    assert store.get(p.id).status == "pending"
    assert store.check_confirmation(token, p, alice).status == "approved"


def test_token_is_bound_to_the_proposal_content(store: ProposalStore) -> None:
    p, _ = store.create(make_proposal())
    alice = principal()
    token = store.confirmation_token(p, alice)
    swapped = make_proposal(proposed=appointment("noshow", version=None))
    with pytest.raises(AccessDenied) as info:
        store.check_confirmation(token, swapped, alice)
    assert info.value.reason == "confirmation.wrong_proposal"


def test_expired_token_and_expired_proposal_are_refused(store: ProposalStore, clock: Clock) -> None:
    p, _ = store.create(make_proposal())
    alice = principal()
    token = store.confirmation_token(p, alice)
    clock.advance(minutes=10)
    with pytest.raises(AccessDenied) as info:
        store.check_confirmation(token, p, alice)
    assert info.value.reason == "confirmation.expired"
    fresh = store.confirmation_token(p, alice)
    clock.advance(minutes=50)  # the proposal's hour is up; the token's expiry was capped at it
    with pytest.raises(AccessDenied) as capped:
        store.check_confirmation(fresh, p, alice)
    assert capped.value.reason == "confirmation.expired"
    assert store.get(p.id).status == "expired"
    with pytest.raises(Conflict):
        store.confirmation_token(p, alice)


def test_high_risk_cannot_be_confirmed_in_chat(store: ProposalStore) -> None:
    p, _ = store.create(high_risk())
    with pytest.raises(AccessDenied) as info:
        store.confirmation_token(p, principal())
    assert info.value.reason == "confirmation.high_risk"


def test_token_for_a_decided_proposal_is_refused(store: ProposalStore) -> None:
    p, _ = store.create(make_proposal())
    alice = principal()
    token = store.confirmation_token(p, alice)
    store.decide(p.id, "bob", False, "wrong slot")
    with pytest.raises(Conflict):
        store.check_confirmation(token, p, alice)


def test_token_from_another_store_key_is_refused(store: ProposalStore, store_path: Path, clock: Clock) -> None:
    p, _ = store.create(make_proposal())
    other = ProposalStore(store_path.with_name("other.db"), mac_key=MAC_KEY[:-1] + b"!", clock=clock)
    other.create(p)
    token = other.confirmation_token(p, principal())
    other.close()
    with pytest.raises(AccessDenied) as info:
        store.check_confirmation(token, p, principal())
    assert info.value.reason == "confirmation.forged"
