"""`fhirgate approvals list|show|approve|reject|verify`: the human side of safe writes (docs/writes.md).

Exit codes: 0 done; 1 an error (missing data directory, unknown proposal, bad input); 3 a decision the
store refused (self-approval of a high-risk proposal, expired or already decided); 4 `verify` found
edited or forged rows; 5 approved but the write was refused (stale version, slot taken: nothing written).
`approve` writes the approved change at once; every decision and write leaves an audit record. `show`
prints the proposed change with its values to the operator's terminal; nothing here logs them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import orjson

from fhirgate.core.writes.diff import diff_resources, render_diff
from fhirgate.core.writes.proposal import STATUSES, Proposal
from fhirgate.database import resolve_key
from fhirgate.errors import AccessDenied, ConfigError, Conflict
from fhirgate.location import open_location
from fhirgate.location.backends import open_audit, open_proposals
from fhirgate.service.approvals import ApprovalDesk
from fhirgate.service.auditing import AuditWriter
from fhirgate.store.factory import open_store as open_fhir_store
from fhirgate.writes.proposal_rules import Proposals

AddData = Callable[[argparse.ArgumentParser], None]


def register(sub: Any, add_data: AddData) -> None:
    """Add the approvals sub-command and its verbs."""
    p = sub.add_parser("approvals", help="list, inspect, approve or reject proposed writes")
    verbs = p.add_subparsers(dest="approvals_command", metavar="VERB")
    verbs.required = True

    ls = verbs.add_parser("list", help="proposals, newest first")
    add_data(ls)
    ls.add_argument("--status", choices=STATUSES, help="only proposals in this status")
    ls.add_argument("--principal", metavar="SUBJECT", help="only proposals by this subject key (issuer#sub)")
    ls.add_argument("-n", type=int, default=100, help="at most this many (default 100)")
    ls.add_argument("--json", action="store_true", help="one JSON proposal summary per line")
    ls.set_defaults(handler=cmd_list)

    show = verbs.add_parser("show", help="one proposal with its diff and risk reasons")
    add_data(show)
    show.add_argument("id", metavar="ID")
    show.add_argument("--json", action="store_true", help="the whole proposal as JSON")
    show.set_defaults(handler=cmd_show)

    approve = verbs.add_parser("approve", help="approve a pending proposal")
    add_data(approve)
    approve.add_argument("id", metavar="ID")
    approve.add_argument("--as", dest="decider", required=True, metavar="WHO", help="who approves (not the proposer)")
    approve.add_argument("--reason", metavar="TEXT", help="why (optional)")
    approve.set_defaults(handler=cmd_approve)

    reject = verbs.add_parser("reject", help="reject a pending proposal")
    add_data(reject)
    reject.add_argument("id", metavar="ID")
    reject.add_argument("--as", dest="decider", required=True, metavar="WHO", help="who rejects")
    reject.add_argument("--reason", required=True, metavar="TEXT", help="why (required)")
    reject.set_defaults(handler=cmd_reject)

    verify = verbs.add_parser("verify", help="check every proposal row's signature")
    add_data(verify)
    verify.set_defaults(handler=cmd_verify)


def open_store(args: argparse.Namespace) -> Proposals:
    """The location's proposal store; a FHIR store must exist there (approving writes to it)."""
    location = open_location(args.data)
    if not location.exists():
        raise ConfigError(f"no store in {location.name}")
    return open_proposals(location, key=resolve_key(args.key_file))


def _summary(p: Proposal) -> dict[str, Any]:
    return {
        "id": p.id,
        "status": p.status,
        "risk": p.risk,
        "kind": p.kind,
        "target": f"{p.resource_type}/{p.target_id}",
        "proposer": p.subject_key,
        "created": p.created,
        "expires": p.expires,
        "decider": p.decider,
    }


def cmd_list(args: argparse.Namespace) -> int:
    """Print one line per proposal (or JSON lines)."""
    with open_store(args) as store:
        items = store.list(status=args.status, principal=args.principal, limit=max(1, min(args.n, 1000)))
    for p in items:
        if args.json:
            print(orjson.dumps(_summary(p)).decode())
        else:
            print(
                f"{p.id}  {p.status:<8} {p.risk:<4} {p.kind:<6} {p.resource_type}/{p.target_id}  "
                f"by {p.subject_key}  expires {p.expires}"
            )
    if not args.json:
        print(f"{len(items)} proposal(s)", file=sys.stderr)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Print a proposal's summary, risk reasons and field-level diff."""
    with open_store(args) as store:
        p = store.get(args.id)
    if args.json:
        print(orjson.dumps(p.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())
        return 0
    lines = [
        f"proposal {p.id}: {p.kind} {p.resource_type}/{p.target_id}"
        + (f" (base version {p.base_version})" if p.base_version else ""),
        f"status:   {p.status}" + (f" by {p.decider} at {p.decided}" if p.decider else ""),
    ]
    if p.decision_reason:
        lines.append(f"reason:   {p.decision_reason}")
    lines += [
        f"proposer: {p.subject_key}" + (f" via client {p.client_id}" if p.client_id else ""),
        f"purpose:  {p.purpose or '-'}",
        f"created:  {p.created}   expires: {p.expires}",
        f"risk:     {p.risk.upper()}" + (" (needs approval by someone other than the proposer)" if p.high_risk else ""),
    ]
    lines += [f"  - {code}" for code in p.risk_reasons]
    lines += ["changes:", render_diff(diff_resources(p.current, p.resource))]
    print("\n".join(lines))
    return 0


def _decide(args: argparse.Namespace, approve: bool) -> int:
    data_dir = open_location(args.data)
    key = resolve_key(args.key_file)
    with open_store(args) as proposals:
        store = open_fhir_store(data_dir, key=key, create=False)
        audit = open_audit(data_dir, key=key)
        try:
            desk = ApprovalDesk(store, proposals, AuditWriter(audit))
            try:
                decision = desk.decide(args.id, args.decider, approve, args.reason)
            except AccessDenied as exc:
                print(f"fhirgate: refused ({exc.reason}): {exc.message}", file=sys.stderr)
                return 3
            except Conflict as exc:
                print(f"fhirgate: refused: {exc.message}", file=sys.stderr)
                return 3
        finally:
            audit.close()
            store.close()
    p = decision.proposal
    if decision.applied is None:
        print(f"proposal {p.id} {p.status} by {p.decider}")
        return 0
    if decision.applied.ok:
        print(f"proposal {p.id} approved by {p.decider} and applied: {p.outcome}")
        return 0
    print(f"proposal {p.id} approved by {p.decider} but NOT applied (nothing written): {p.outcome}", file=sys.stderr)
    return 5


def cmd_approve(args: argparse.Namespace) -> int:
    """Approve; exit 3 when refused."""
    return _decide(args, True)


def cmd_reject(args: argparse.Namespace) -> int:
    """Reject; exit 3 when refused."""
    return _decide(args, False)


def cmd_verify(args: argparse.Namespace) -> int:
    """Exit 0 when every row verifies, 4 when any was edited or forged."""
    with open_store(args) as store:
        checked, problems = store.verify()
    if not problems:
        print(f"proposals OK: {checked} rows verified")
        return 0
    print(f"proposals BROKEN: {len(problems)} of {checked} rows fail verification", file=sys.stderr)
    for problem in problems:
        print(f"  {problem.id}: {problem.problem}", file=sys.stderr)
    return 4
