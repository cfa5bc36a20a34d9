"""`fhirgate audit verify|tail|head|export|disclosures`: prove the audit chain intact, read it, and account for it."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fhirgate.database import resolve_key
from fhirgate.errors import ConfigError
from fhirgate.location import open_location

AddData = Callable[[argparse.ArgumentParser], None]


def register(sub: Any, add_data: AddData) -> None:
    """Add the audit sub-command and its verbs."""
    p = sub.add_parser("audit", help="verify, read and export the tamper-evident audit log")
    verbs = p.add_subparsers(dest="audit_command", metavar="VERB")
    verbs.required = True

    v = verbs.add_parser(
        "verify",
        help="check the hash chain; names any edited, deleted or reordered record",
        description="Recompute the audit hash chain and name every edited, deleted, reordered, inserted or "
        "truncated record. With --head, also prove the chain still holds each saved `audit head` line: exit 0 "
        "only when the chain verifies and every saved head is found, 4 otherwise.",
    )
    add_data(v)
    v.add_argument(
        "--head",
        action="append",
        default=[],
        metavar="LINE|FILE",
        help="a line saved from `fhirgate audit head`, or a file of such lines (one per line; blank and # lines "
        "skipped); repeatable. Each must carry this chain key's MAC and its seq must still hold the same record",
    )
    v.set_defaults(handler=cmd_verify)

    t = verbs.add_parser("tail", help="print the last audit records")
    add_data(t)
    t.add_argument("-n", type=int, default=20, help="how many records (default 20)")
    t.add_argument("--json", action="store_true", help="one JSON record per line")
    t.set_defaults(handler=cmd_tail)

    h = verbs.add_parser(
        "head",
        help="print the MAC'd head anchor line, to keep a copy off-host (check it later: audit verify --head)",
    )
    add_data(h)
    h.set_defaults(handler=cmd_head)

    e = verbs.add_parser("export", help="export audit records (FHIR AuditEvent per IHE BALP, or raw JSON)")
    add_data(e)
    e.add_argument("--format", choices=("fhir", "json"), default="fhir")
    e.add_argument("--out", metavar="FILE", help="output file (default: stdout)")
    e.add_argument("--since", type=int, default=0, metavar="SEQ", help="only records after this sequence number")
    e.set_defaults(handler=cmd_export)

    d = verbs.add_parser(
        "disclosures", help="accounting of disclosures for one patient (45 CFR 164.528): date, recipient, data, purpose"
    )
    add_data(d)
    d.add_argument("--patient", required=True, metavar="ID", help="the patient's FHIR id")
    d.add_argument("--since", metavar="YYYY-MM-DD", help="first day, inclusive (default: six years ago)")
    d.add_argument("--until", metavar="YYYY-MM-DD", help="last day, inclusive (default: today, UTC)")
    d.add_argument("--format", choices=("table", "json", "fhir"), default="table", help="output format (default table)")
    d.set_defaults(handler=cmd_disclosures)


def open_audit_log(args: argparse.Namespace) -> Any:
    """The data directory's audit log (read for verification and export)."""
    from fhirgate.location.backends import audit_exists, open_audit

    location = open_location(args.data)
    if not audit_exists(location):
        raise ConfigError(f"no audit log in {location.name}")
    return open_audit(location, key=resolve_key(args.key_file))


def cmd_verify(args: argparse.Namespace) -> int:
    """Exit 0 when the chain verifies (and every --head is found in it), 4 when anything was tampered with."""
    from fhirgate.audit.anchor import saved_heads, verify_heads
    from fhirgate.audit.verify import verify

    saved = [line for i, value in enumerate(args.head, 1) for line in saved_heads(value, f"--head {i}")]
    log = open_audit_log(args)
    try:
        if saved:
            anchored = verify_heads(log, saved)
            report, heads = anchored.chain, anchored.heads
        else:
            report, heads = verify(log), []
    finally:
        log.close()
    failed = [h for h in heads if not h.ok]
    if report.ok and not failed:
        found = f"; {len(saved)} saved head(s) found, newest seq {max((h.seq or 0 for h in heads), default=0)}"
        print(f"audit chain OK: {report.checked} records verified" + (found if saved else ""))
        return 0
    if report.ok:
        print(f"audit chain OK: {report.checked} records verified", file=sys.stderr)
    else:
        print(f"audit chain BROKEN: {len(report.problems)} problem(s) in {report.checked} records", file=sys.stderr)
    for problem in report.problems:
        print(f"  seq {problem.seq}: {problem.kind}: {problem.detail}", file=sys.stderr)
    if failed:
        print(f"saved heads NOT in this chain: {len(failed)} of {len(saved)}", file=sys.stderr)
    for head in failed:
        print(f"  {head.message()}", file=sys.stderr)
    return 4


def cmd_head(args: argparse.Namespace) -> int:
    """Print `seq hash mac` of the newest record: a copy kept elsewhere detects a later truncation."""
    log = open_audit_log(args)
    try:
        print(log.head_line())
    finally:
        log.close()
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    """Print the newest records, oldest first."""
    log = open_audit_log(args)
    try:
        entries = log.tail(max(1, args.n))
    finally:
        log.close()
    for entry in entries:
        r = entry.record
        if args.json:
            print(r.to_json().decode())
            continue
        refs = len(r.references)
        print(
            f"{entry.seq:>7} {r.time} {r.outcome:<9} {r.method} {r.name or '-'} sub={r.sub or '-'} "
            f"patients={','.join(r.patients) or '-'} refs={refs} {r.latency_ms:.1f}ms"
            + (f" reason={r.reason}" if r.reason else "")
        )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write AuditEvent NDJSON (format fhir) or raw records (format json)."""
    import orjson

    from fhirgate.audit.balp import to_audit_event

    log = open_audit_log(args)
    count = 0
    with contextlib.ExitStack() as stack:
        stack.callback(log.close)
        out = stack.enter_context(Path(args.out).open("wb")) if args.out else sys.stdout.buffer
        for entry in log.iter(since_seq=args.since):
            doc = to_audit_event(entry) if args.format == "fhir" else orjson.loads(entry.record.to_json())
            out.write(orjson.dumps(doc) + b"\n")
            count += 1
    print(f"exported {count} audit records", file=sys.stderr)
    return 0


def cmd_disclosures(args: argparse.Namespace) -> int:
    """Print the accounting of disclosures for one patient; exit 2 on a bad patient id or date."""
    import orjson

    from fhirgate.audit import disclosures as acct
    from fhirgate.errors import InvalidInput

    try:
        patient = acct.check_patient_id(args.patient)
        since, until = acct.window(args.since, args.until)
    except InvalidInput as exc:
        print(
            f"fhirgate: error: --{exc.param}: {exc.problem}" + (f" ({exc.allowed})" if exc.allowed else ""),
            file=sys.stderr,
        )
        return 2
    log = open_audit_log(args)
    try:
        if args.format == "fhir":
            for event in acct.audit_events(log, patient, since, until):
                sys.stdout.buffer.write(orjson.dumps(event) + b"\n")
            sys.stdout.flush()
            return 0
        items = acct.disclosures(log, patient, since, until)
    finally:
        log.close()
    if args.format == "json":
        print(orjson.dumps([d.to_dict() for d in items], option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"Accounting of disclosures for Patient/{patient}, {since.isoformat()} to {until.isoformat()} (UTC)")
    print(f"{'date':<20} {'client':<20} {'user':<28} {'purpose':<16} {'exempt':<18} description")
    for d in items:
        print(
            f"{d.date[:19].replace('T', ' '):<20} {d.client_id or '-':<20} {d.user or '-':<28} {d.purpose:<16} "
            f"{d.exempt_reason or 'no':<18} {d.description} [request {d.request_id}]"
        )
    exempt = sum(1 for d in items if d.exempt_reason)
    print(f"{len(items)} access(es); {len(items) - exempt} not exempt under 164.528(a)(1)")
    return 0
