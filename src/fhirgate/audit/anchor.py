"""Saved head lines checked against the audit chain: proof that nobody truncated or rewrote it back past them.

`fhirgate audit head` prints the chain's head anchor line `seq hash mac` (chain.ChainKey.anchor_line):
20-digit seq, the record's 64-hex chain hash, and a 64-hex MAC keyed with the chain key over the chain
id, seq and hash. An operator ships copies off-host. Someone holding both the database and the chain key
can delete the newest records and re-MAC the anchor, leaving a shorter chain that verifies on its own;
only a saved line shows what the chain once reached. For each saved line this module checks:

    MAC invalid  the line's MAC is not this chain key's for this chain (forged, edited, or another chain)
    not found    the chain no longer holds a record at that seq (truncated, or rewritten shorter)
    mismatched   the record at that seq has another hash, or no longer verifies against it (rewritten)
    malformed    the text is not a head line at all

A found head plus a chain that verifies end to end (audit.verify) proves every record up to that seq is
the one that existed when the line was saved: each record's hash covers its predecessor's. Works over
any AuditStore (SQLite and PostgreSQL alike); messages carry seqs and hashes only, never record content.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fhirgate.audit.chain import AuditStore
from fhirgate.audit.verify import VerifyReport, verify
from fhirgate.errors import AuditError

FOUND = "found"
NOT_FOUND = "not found"
MAC_INVALID = "MAC invalid"
MISMATCHED = "mismatched"
MALFORMED = "malformed"

# Exactly what head_line() prints (ChainKey.anchor_line without its newline); surrounding blanks are tolerated.
_HEAD_LINE_RE = re.compile(r"(\d{20}) ([0-9a-f]{64}) ([0-9a-f]{64})")
_MAX_LINES = 100_000  # a file of daily heads stays far below this; refuse anything that is clearly not one


@dataclass(frozen=True, slots=True)
class SavedHead:
    """One saved head line and where it came from (for messages: `--head 2`, `heads.txt line 7`)."""

    where: str
    text: str


@dataclass(frozen=True, slots=True)
class HeadResult:
    """The verdict on one saved head: its seq (None when unreadable), status, and a PHI-free detail."""

    where: str
    seq: int | None
    status: str
    detail: str

    @property
    def ok(self) -> bool:
        return self.status == FOUND

    def message(self) -> str:
        """One line naming the seq and what is wrong (or that it was found)."""
        what = f"head seq {self.seq}" if self.seq is not None else "head"
        return f"{what} ({self.where}): {self.status}: {self.detail}"


@dataclass(slots=True)
class AnchorReport:
    """The chain's own verification plus the verdict on each saved head; ok only when all pass."""

    chain: VerifyReport
    heads: list[HeadResult] = field(default_factory=list)

    @property
    def failed(self) -> list[HeadResult]:
        return [h for h in self.heads if not h.ok]

    @property
    def ok(self) -> bool:
        return self.chain.ok and bool(self.heads) and not self.failed


def saved_heads(value: str, label: str) -> list[SavedHead]:
    """The head lines `value` stands for: a file of lines (one per line; blank and `#` lines skipped) when
    it names an existing file, else `value` itself as one line. AuditError when the file is unreadable or
    holds no line."""
    path = Path(value)
    try:
        is_file = path.is_file()
    except (OSError, ValueError):
        is_file = False
    if not is_file:
        return [SavedHead(label, value)]
    try:
        with path.open("r", encoding="utf-8", errors="replace") as fh:
            lines = list(_numbered(fh, path.name))
    except OSError as exc:
        raise AuditError(f"{label}: cannot read {path.name}: {exc.strerror}") from None
    if not lines:
        raise AuditError(f"{label}: {path.name} holds no head line")
    return lines


def _numbered(lines: Iterable[str], name: str) -> Iterable[SavedHead]:
    for number, line in enumerate(lines, 1):
        if number > _MAX_LINES:
            raise AuditError(f"{name} has more than {_MAX_LINES} lines; not a file of head lines")
        text = line.strip()
        if text and not text.startswith("#"):
            yield SavedHead(f"{name} line {number}", text)


def check_head(log: AuditStore, saved: SavedHead) -> HeadResult:
    """Whether the chain still holds the record the saved line names, with the same hash."""
    match = _HEAD_LINE_RE.fullmatch(saved.text.strip())
    if match is None:
        detail = "not a head line (expected `seq hash mac` as printed by `fhirgate audit head`)"
        return HeadResult(saved.where, None, MALFORMED, detail)
    seq, hash_, mac = int(match[1]), match[2], match[3]

    def result(status: str, detail: str) -> HeadResult:
        return HeadResult(saved.where, seq, status, detail)

    if not log.head_mac_ok(seq, hash_, mac):
        return result(MAC_INVALID, "not a head line of this chain's key (forged, edited, or from another chain)")
    if seq == 0:  # the head of an empty chain: the genesis value, which no truncation can remove
        if hash_ == log.genesis:
            return result(FOUND, "the empty chain's genesis")
        return result(MISMATCHED, "the saved hash is not this chain's genesis")
    rows = list(log.raw_rows(since_seq=seq - 1, until_seq=seq))
    if not rows:
        last = log.snapshot_head()[0]
        end = f"the chain ends at seq {last}" if last else "the chain is empty"
        return result(NOT_FOUND, f"no record at this seq; {end} (truncated or rewritten back past this head)")
    _, prev, stored_hash, text = rows[0]
    if str(stored_hash) != hash_:
        return result(MISMATCHED, "the record at this seq has another hash than the saved head (rewritten)")
    if log.chain_hash(str(prev), seq, str(text).encode()) != hash_:
        return result(MISMATCHED, "the record at this seq no longer matches the saved hash (edited)")
    return result(FOUND, "the record at this seq matches the saved head")


def verify_heads(log: AuditStore, saved: Sequence[SavedHead]) -> AnchorReport:
    """Verify the whole chain, then check each saved head against it; see AnchorReport.ok."""
    report = AnchorReport(verify(log))
    report.heads = [check_head(log, s) for s in saved]
    return report
