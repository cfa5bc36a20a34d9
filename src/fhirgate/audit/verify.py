"""Audit-chain verification: recompute every HMAC from stored bytes and say which records were tampered with.

Nothing stored is trusted: each record's hash is recomputed with the chain key from its stored
prev_hash, seq and JSON; links are checked against the previous row; the end of the chain is checked
against the MAC'd head anchor file and SQLite's AUTOINCREMENT counter; and the append-only triggers
are checked for presence. Supports HIPAA 45 CFR 164.312(b): audit records must be examinable and
trustworthy.

Problem kinds:
    edited     the record's stored hash does not match its content (JSON, prev_hash or hash changed)
    deleted    records missing from the middle (gap in seq, or prev_hash links to a missing record)
    reordered  a record sits at the wrong place (it verifies at another seq, or follows another record)
    truncated  the anchor or the AUTOINCREMENT counter says records existed past the last one found
    inserted   a row that no key-holder wrote: past the anchored head, seq < 1, or a replayed copy
    anchor     the head anchor file is missing, malformed, forged, or disagrees with the chain
    schema     an append-only trigger was dropped
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import islice
from typing import NamedTuple

from fhirgate.audit.chain import AuditStore, HeadAnchor
from fhirgate.errors import AuditError

# Re-order detection tries each failing row at other candidate positions: bound the work.
_MAX_CANDIDATES = 2000


class AuditProblem(NamedTuple):
    """One finding: the seq it concerns (None for the whole log), its kind, and a PHI-free detail."""

    seq: int | None
    kind: str
    detail: str


@dataclass(slots=True)
class VerifyReport:
    """The result of verifying a chain: ok only when no problem was found."""

    checked: int = 0
    head_seq: int = 0
    anchor_seq: int | None = None
    problems: list[AuditProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def kinds(self) -> dict[int | None, set[str]]:
        """Problem kinds by seq, for callers (and tests) that ask what happened to one record."""
        out: dict[int | None, set[str]] = {}
        for p in self.problems:
            out.setdefault(p.seq, set()).add(p.kind)
        return out


@dataclass(slots=True)
class _Row:
    seq: int
    prev: str
    hash: str
    data: bytes
    valid: bool


def _span(first: int, last: int) -> str:
    return f"record {first}" if first == last else f"records {first}..{last}"


def verify(log: AuditStore) -> VerifyReport:
    """Check the whole chain of `log` and report every problem found, each naming the record(s)."""
    max_seq, counter, anchor_or_error = log.snapshot_head()
    report = VerifyReport(head_seq=max_seq)
    problems = report.problems
    for name in log.missing_triggers():
        problems.append(AuditProblem(None, "schema", f"append-only trigger {name} is missing"))

    rows: list[_Row] = []
    for seq, prev, hash_, text in log.raw_rows(since_seq=-(2**63), until_seq=max_seq):
        data = str(text).encode()
        s, p, h = int(seq), str(prev), str(hash_)
        valid = log.chain_hash(p, s, data) == h
        rows.append(_Row(s, p, h, b"" if valid else data, valid))  # keep bytes only where needed
    report.checked = len(rows)
    by_seq = {r.seq: r for r in rows}
    by_hash: dict[str, list[int]] = {}
    for r in rows:
        by_hash.setdefault(r.hash, []).append(r.seq)

    anchor: HeadAnchor | None = None
    if isinstance(anchor_or_error, AuditError):
        problems.append(AuditProblem(None, "anchor", anchor_or_error.message))
    else:
        anchor = anchor_or_error
        if anchor is None and rows:
            problems.append(AuditProblem(None, "anchor", "head anchor file is missing or empty"))
    report.anchor_seq = anchor.seq if anchor else None

    # Seqs that should exist but do not: gaps, and the tail the anchor or counter vouches for.
    expected_end = max(max_seq, anchor.seq if anchor else 0, counter)
    present = set(by_seq)
    # Bounded: an attacker can set the AUTOINCREMENT counter to any huge number.
    missing = list(islice((s for s in range(1, expected_end + 1) if s not in present), _MAX_CANDIDATES))
    flagged: set[int] = set()

    _classify_failures(log, rows, by_seq, by_hash, missing, anchor, problems, flagged)
    _check_gaps_and_links(log, rows, by_hash, anchor, max_seq, problems, flagged)
    _check_end(rows, by_seq, anchor, counter, max_seq, problems)
    problems.sort(key=lambda p: (p.seq if p.seq is not None else -1, p.kind))
    return report


def _classify_failures(
    log: AuditStore,
    rows: list[_Row],
    by_seq: dict[int, _Row],
    by_hash: dict[str, list[int]],
    missing: list[int],
    anchor: HeadAnchor | None,
    problems: list[AuditProblem],
    flagged: set[int],
) -> None:
    """Name each row whose hash does not verify: reordered, inserted, or edited."""
    failing = [r for r in rows if not r.valid]
    candidates = ([r.seq for r in failing] + missing)[:_MAX_CANDIDATES]
    try_moves = len(failing) * len(candidates) <= _MAX_CANDIDATES * 50
    for r in failing:
        flagged.add(r.seq)
        twins = [s for s in by_hash.get(r.hash, []) if s != r.seq and by_seq[s].valid]
        if twins and log.chain_hash(r.prev, twins[0], r.data) == r.hash:
            problems.append(AuditProblem(r.seq, "inserted", f"replayed copy of record {twins[0]}"))
            continue
        origin = None
        if try_moves:
            # The whole row was renumbered: it verifies under another seq.
            origin = next((c for c in candidates if c != r.seq and log.chain_hash(r.prev, c, r.data) == r.hash), None)
            if origin is not None:
                problems.append(AuditProblem(r.seq, "reordered", f"row of record {origin} moved here"))
                continue
            # Only the JSON moved: it verifies with another failing row's links.
            for c in candidates:
                other = by_seq.get(c)
                if other is not None and c != r.seq and log.chain_hash(other.prev, c, r.data) == other.hash:
                    origin = c
                    break
            if origin is not None:
                problems.append(AuditProblem(r.seq, "reordered", f"holds the content of record {origin}"))
                continue
        if r.seq < 1 or (anchor is not None and r.seq > anchor.seq):
            problems.append(AuditProblem(r.seq, "inserted", "row not written by a key holder (past the anchored head)"))
        else:
            problems.append(AuditProblem(r.seq, "edited", "hash does not match the stored record"))


def _check_gaps_and_links(
    log: AuditStore,
    rows: list[_Row],
    by_hash: dict[str, list[int]],
    anchor: HeadAnchor | None,
    max_seq: int,
    problems: list[AuditProblem],
    flagged: set[int],
) -> None:
    """Report missing seqs in the middle, and prev_hash links that skip or re-order records."""
    prev_row: _Row | None = None
    for r in rows:
        if r.seq < 1:
            continue
        expected_seq = prev_row.seq + 1 if prev_row else 1
        gap = r.seq > expected_seq
        if gap:
            problems.append(AuditProblem(expected_seq, "deleted", f"{_span(expected_seq, r.seq - 1)} missing"))
        elif r.seq not in flagged and (prev_row is None or prev_row.seq not in flagged):
            expected_prev = prev_row.hash if prev_row else log.genesis
            if r.prev != expected_prev:
                linked = [s for s in by_hash.get(r.prev, []) if s != r.seq]
                if linked:
                    problems.append(
                        AuditProblem(r.seq, "reordered", f"links to record {linked[0]}, not to the record before it")
                    )
                else:
                    problems.append(
                        AuditProblem(r.seq, "deleted", "prev_hash links to a record that is missing before this one")
                    )
        prev_row = r


def _check_end(
    rows: list[_Row],
    by_seq: dict[int, _Row],
    anchor: HeadAnchor | None,
    counter: int,
    max_seq: int,
    problems: list[AuditProblem],
) -> None:
    """Compare the chain's end with the head anchor and the AUTOINCREMENT counter."""
    if anchor is not None:
        if anchor.seq > max_seq:
            problems.append(
                AuditProblem(max_seq + 1, "truncated", f"{_span(max_seq + 1, anchor.seq)} missing at the end")
            )
        else:
            at = by_seq.get(anchor.seq)
            if anchor.seq > 0 and at is not None and at.valid and at.hash != anchor.hash:
                problems.append(AuditProblem(anchor.seq, "anchor", "record differs from the anchored head"))
            beyond = [r.seq for r in rows if r.seq > anchor.seq and r.valid]
            if beyond:
                problems.append(
                    AuditProblem(
                        beyond[0], "anchor", f"head anchor is behind the log (anchored {anchor.seq}); rolled back?"
                    )
                )
    if counter > max_seq and (anchor is None or anchor.seq <= max_seq or counter > anchor.seq):
        start = max(max_seq, anchor.seq if anchor else 0) + 1
        problems.append(
            AuditProblem(start, "truncated", f"{_span(start, counter)} missing at the end (AUTOINCREMENT counter)")
        )
