"""The audit chain's arithmetic and contract, shared by the SQLite and PostgreSQL audit logs (one copy).

HIPAA 45 CFR 164.312(b) (audit controls) asks that activity in systems holding ePHI be recorded and
examinable; the HMAC chain makes tampering provable afterwards, whichever database holds the records.

Chain: record `seq` has `hash = HMAC-SHA256(chain_key, prev_hash || seq as 8 bytes || record JSON)`;
the first record links to a per-chain genesis value. Labelled MACs (`fhirgate-audit|label|chain_id|…`)
derive the genesis, the key check stored beside the chain, and the MAC of the head anchor line
`seq hash mac`. `AuditStore` is what verification, the accounting of disclosures and BALP export
need from a log; both `AuditLog` (SQLite) and `PgAuditLog` (PostgreSQL) satisfy it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from fhirgate.audit.record import AuditRecord
from fhirgate.errors import AuditError

ANCHOR_LEN = 20 + 1 + 64 + 1 + 64 + 1
_ANCHOR_RE = re.compile(rb"(\d{20}) ([0-9a-f]{64}) ([0-9a-f]{64})\n")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One stored record with its place in the chain."""

    seq: int
    prev_hash: str
    hash: str
    record: AuditRecord


@dataclass(frozen=True, slots=True)
class HeadAnchor:
    """The last appended (seq, hash) as written to the anchor file, MAC-checked."""

    seq: int
    hash: str


def check_chain_key(chain_key: object) -> bytes:
    """The chain key when it is long enough to resist guessing; AuditError otherwise."""
    if not isinstance(chain_key, bytes) or len(chain_key) < 16:
        raise AuditError("chain_key must be at least 16 bytes")
    return chain_key


class ChainKey:
    """The chain key bound to one chain id: every MAC and hash of that chain."""

    def __init__(self, key: bytes, chain_id: str) -> None:
        self._key = check_chain_key(key)
        self.chain_id = chain_id
        self.genesis = self.mac(b"genesis")

    def mac(self, label: bytes, *parts: bytes) -> str:
        """A labelled HMAC over the chain id and parts, hex."""
        msg = b"fhirgate-audit|" + label + b"|" + self.chain_id.encode() + b"".join(b"|" + p for p in parts)
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def key_check(self) -> str:
        """The value stored beside the chain so that a wrong key is refused at open."""
        return self.mac(b"key-check")

    def require_key_check(self, stored: str) -> None:
        """Raise AuditError unless `stored` is this key's check value."""
        if not hmac.compare_digest(stored, self.key_check()):
            raise AuditError("the chain key does not match this audit log (keys/ replaced?)")

    def chain_hash(self, prev_hash: str, seq: int, record_json: bytes) -> str:
        """HMAC-SHA256(chain_key, prev_hash || seq || record JSON), hex; fixed-width fields keep it unambiguous."""
        try:
            prev = bytes.fromhex(prev_hash)
            seq_bytes = seq.to_bytes(8, "big", signed=True)
        except (ValueError, OverflowError, TypeError):
            return ""
        if len(prev) != 32:
            return ""
        return hmac.new(self._key, prev + seq_bytes + record_json, hashlib.sha256).hexdigest()

    def head_mac_ok(self, seq: int, hash_: str, mac: str) -> bool:
        """True when `mac` is this key's and chain's head MAC of (seq, hash): the line was written here."""
        return hmac.compare_digest(mac, self.mac(b"head", str(seq).encode(), hash_.encode()))

    def anchor_line(self, seq: int, hash_: str) -> bytes:
        """The MAC'd head anchor line `seq hash mac` for (seq, hash)."""
        mac = self.mac(b"head", str(seq).encode(), hash_.encode())
        return f"{seq:020d} {hash_} {mac}\n".encode()

    def parse_anchor(self, data: bytes, where: str) -> HeadAnchor | None:
        """The anchor in `data` (None when empty); AuditError naming `where` when malformed or forged."""
        if not data:
            return None
        match = _ANCHOR_RE.fullmatch(data)
        if match is None:
            raise AuditError(f"head anchor {where} is malformed")
        seq, hash_ = int(match[1]), match[2].decode()
        expected = self.mac(b"head", str(seq).encode(), hash_.encode())
        if not hmac.compare_digest(match[3].decode(), expected):
            raise AuditError(f"head anchor {where} has a bad MAC (forged or wrong key)")
        return HeadAnchor(seq, hash_)

    def next_link(
        self, anchor: HeadAnchor | None, last: Sequence[Any] | None, where: str, counter: int = 0
    ) -> tuple[int, str]:
        """The seq and prev_hash for the next record, trusting the MAC'd anchor over the database.

        `last` is the stored (seq, hash, prev_hash, record) row with the highest seq, `counter` any
        independent high-water mark of seqs (SQLite's AUTOINCREMENT counter).
        """
        db_seq = int(last[0]) if last else 0
        if anchor is None:
            if db_seq or counter:
                raise AuditError(
                    f"head anchor {where} is missing for a non-empty audit log; run audit verify, then reanchor"
                )
            return 1, self.genesis
        head = max(db_seq, counter, anchor.seq)
        if anchor.seq == head:
            return head + 1, anchor.hash
        if last is not None and db_seq == head:
            # Rows beyond the anchor were not written by an appender holding the key unless they verify.
            if self.chain_hash(str(last[2]), db_seq, str(last[3]).encode()) != str(last[1]):
                raise AuditError("audit log head was altered after the last anchor; run audit verify")
            return head + 1, str(last[1])
        return head + 1, anchor.hash


def parse_record(text: Any, seq: Any) -> AuditRecord:
    """The record stored as `text` at `seq`; AuditError (naming only the seq) when it is malformed."""
    try:
        return AuditRecord.from_row(str(text))
    except AuditError:
        raise AuditError(f"audit record seq {int(seq)} is malformed; run audit verify") from None


@runtime_checkable
class AuditStore(Protocol):
    """What verification, disclosures and export need from an audit log (SQLite or PostgreSQL)."""

    chain_id: str
    genesis: str

    def append(self, record: AuditRecord) -> int: ...

    def chain_hash(self, prev_hash: str, seq: int, record_json: bytes) -> str: ...

    def missing_triggers(self) -> list[str]: ...

    def read_anchor(self) -> HeadAnchor | None: ...

    def head_line(self) -> str: ...

    def head_mac_ok(self, seq: int, hash_: str, mac: str) -> bool: ...

    def reanchor(self) -> int: ...

    def raw_rows(self, since_seq: int = 0, until_seq: int | None = None) -> Iterator[tuple[Any, ...]]: ...

    def iter(self, since_seq: int = 0) -> Iterator[AuditEntry]: ...

    def tail(self, n: int = 20) -> list[AuditEntry]: ...

    def count(self) -> int: ...

    def snapshot_head(self) -> tuple[int, int, HeadAnchor | AuditError | None]: ...

    def close(self) -> None: ...


class ChainReader:
    """The read side both audit logs share: rows in seq order, entries, tail, count, over the subclass's `_query`.

    `_PARAM` is the driver's placeholder (`?` for SQLite, `%s` for psycopg); the SQL is otherwise the same.
    """

    _PARAM = "?"
    _BATCH = 1000
    _chain: ChainKey  # set by the subclass once the chain id is known

    def head_mac_ok(self, seq: int, hash_: str, mac: str) -> bool:
        """True when a saved head line's MAC was made with this log's key for this chain (audit/anchor.py)."""
        return self._chain.head_mac_ok(seq, hash_, mac)

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def raw_rows(self, since_seq: int = 0, until_seq: int | None = None) -> Iterator[tuple[Any, ...]]:
        """(seq, prev_hash, hash, record text) rows in seq order, as stored, read in batches."""
        p = self._PARAM
        last = since_seq
        upper = until_seq if until_seq is not None else 2**63 - 1
        while True:
            sql = f"SELECT seq, prev_hash, hash, record FROM audit_log WHERE seq > {p} AND seq <= {p} ORDER BY seq LIMIT {p}"  # noqa: E501, S608 - fixed placeholder, values bound
            rows = self._query(sql, (last, upper, self._BATCH))
            yield from rows
            if len(rows) < self._BATCH:
                return
            last = int(rows[-1][0])

    def iter(self, since_seq: int = 0) -> Iterator[AuditEntry]:
        """Entries with seq greater than since_seq, oldest first."""
        for seq, prev, hash_, text in self.raw_rows(since_seq):
            yield AuditEntry(int(seq), str(prev), str(hash_), parse_record(text, seq))

    def tail(self, n: int = 20) -> list[AuditEntry]:
        """The last n entries, oldest first."""
        if not isinstance(n, int) or n < 0:
            raise AuditError("tail: n must be a non-negative integer")
        rows = self._query(
            f"SELECT seq, prev_hash, hash, record FROM audit_log ORDER BY seq DESC LIMIT {self._PARAM}",  # noqa: S608
            (n,),
        )
        return [AuditEntry(int(s), str(p), str(h), parse_record(t, s)) for s, p, h, t in reversed(rows)]

    def count(self) -> int:
        """Number of records stored."""
        return int(self._query("SELECT count(*) FROM audit_log")[0][0])
