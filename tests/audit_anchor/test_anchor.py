"""Saved head lines checked against the chain (audit/anchor.py), on SQLite and PostgreSQL alike."""

from __future__ import annotations

from pathlib import Path

import pytest
from anchor_support import Backend

from fhirgate.audit import anchor
from fhirgate.audit.anchor import SavedHead, saved_heads, verify_heads
from fhirgate.audit.chain import ChainKey
from fhirgate.audit.verify import verify
from fhirgate.errors import AuditError


def check(backend: Backend, *lines: str) -> anchor.AnchorReport:
    """verify_heads over the backend's chain for the given lines."""
    log = backend.open()
    try:
        return verify_heads(log, [SavedHead(f"line {i}", text) for i, text in enumerate(lines, 1)])
    finally:
        log.close()


def statuses(report: anchor.AnchorReport) -> list[tuple[int | None, str]]:
    return [(h.seq, h.status) for h in report.heads]


def flip(hex_text: str) -> str:
    """The same hex string with its last digit changed."""
    return hex_text[:-1] + ("0" if hex_text[-1] != "0" else "1")


def test_saved_head_is_found(backend: Backend) -> None:
    backend.append(0, 5)
    line = backend.head_line()
    report = check(backend, line)
    assert report.ok and report.chain.ok
    assert statuses(report) == [(5, anchor.FOUND)]


def test_saved_heads_still_found_after_more_appends(backend: Backend) -> None:
    backend.append(0, 3)
    first = backend.head_line()
    backend.append(3, 4)
    second = backend.head_line()
    backend.append(7, 2)
    report = check(backend, first, second)
    assert report.ok
    assert statuses(report) == [(3, anchor.FOUND), (7, anchor.FOUND)]


def test_edited_line_fails_its_mac(backend: Backend) -> None:
    backend.append(0, 4)
    seq, hash_, mac = backend.head_line().split()
    earlier = f"{2:020d} {hash_} {mac}"  # claims another seq with the same MAC
    report = check(backend, f"{seq} {flip(hash_)} {mac}", f"{seq} {hash_} {flip(mac)}", earlier)
    assert not report.ok and report.chain.ok
    assert statuses(report) == [(4, anchor.MAC_INVALID), (4, anchor.MAC_INVALID), (2, anchor.MAC_INVALID)]


def test_line_of_another_key_fails_its_mac(backend: Backend) -> None:
    backend.append(0, 3)
    log = backend.open()
    try:
        row = next(iter(log.raw_rows(since_seq=2, until_seq=3)))
        other = ChainKey(b"another-key-0123456789abcdef!!", log.chain_id)
    finally:
        log.close()
    forged = other.anchor_line(3, str(row[2])).decode().strip()
    report = check(backend, forged)
    assert statuses(report) == [(3, anchor.MAC_INVALID)]
    assert "not a head line of this chain's key" in report.heads[0].message()


@pytest.mark.parametrize("text", ["", "hello", "00000000000000000003 abc def", "3 " + "a" * 64 + " " + "b" * 64])
def test_malformed_line_is_reported(backend: Backend, text: str) -> None:
    backend.append(0, 3)
    report = check(backend, text)
    assert statuses(report) == [(None, anchor.MALFORMED)]
    assert not report.ok


def test_truncation_re_maced_with_the_key_is_caught_only_by_the_saved_head(backend: Backend) -> None:
    backend.append(0, 6)
    kept = backend.head_line()
    backend.append(6, 4)
    lost = backend.head_line()
    backend.truncate(7)
    log = backend.open()
    try:
        assert verify(log).ok  # the shortened chain verifies on its own: the attack is invisible without a copy
    finally:
        log.close()
    report = check(backend, kept, lost)
    assert report.chain.ok and not report.ok
    assert statuses(report) == [(6, anchor.FOUND), (10, anchor.NOT_FOUND)]
    message = report.failed[0].message()
    assert message.startswith("head seq 10 (line 2): not found:") and "ends at seq 7" in message


def test_everything_truncated_is_not_found(backend: Backend) -> None:
    backend.append(0, 3)
    line = backend.head_line()
    backend.truncate(0)
    report = check(backend, line)
    assert statuses(report) == [(3, anchor.NOT_FOUND)]
    assert "the chain is empty" in report.heads[0].detail


def test_chain_rewritten_past_the_head_is_mismatched(backend: Backend) -> None:
    backend.append(0, 10)
    line = backend.head_line()
    backend.truncate(7)
    backend.append(100, 5)  # new records at seqs 8..12: seq 10 exists again, with other content
    report = check(backend, line)
    assert report.chain.ok
    assert statuses(report) == [(10, anchor.MISMATCHED)]
    assert "another hash" in report.heads[0].detail


def test_record_edited_at_the_head_is_mismatched_and_chain_broken(backend: Backend) -> None:
    backend.append(0, 5)
    line = backend.head_line()
    backend.edit_record(5)
    report = check(backend, line)
    assert not report.chain.ok
    assert statuses(report) == [(5, anchor.MISMATCHED)]
    assert "edited" in report.heads[0].detail


def test_edit_before_a_found_head_still_fails_the_chain(backend: Backend) -> None:
    backend.append(0, 6)
    line = backend.head_line()
    backend.edit_record(2)
    report = check(backend, line)
    assert statuses(report) == [(6, anchor.FOUND)]
    assert not report.ok and (2, "edited") in {(p.seq, p.kind) for p in report.chain.problems}


def test_genesis_head_of_an_empty_chain(backend: Backend) -> None:
    log = backend.open()
    try:
        log.reanchor()
        line = log.head_line()
        other = ChainKey(b"x" * 32, log.chain_id).genesis
    finally:
        log.close()
    assert check(backend, line).ok
    backend.append(0, 2)
    assert check(backend, line).ok  # still the start of the chain
    log = backend.open()
    try:
        assert not log.head_mac_ok(0, other, line.split()[2])
    finally:
        log.close()


def test_messages_carry_no_record_content(backend: Backend) -> None:
    backend.append(0, 4)
    line = backend.head_line()
    backend.truncate(1)
    backend.append(50, 4)
    report = check(backend, line, "Patient/p3")
    text = "\n".join(h.message() for h in report.heads)
    assert "p5" not in text and "read_resource" not in text and "req-" not in text


def test_no_saved_head_is_not_ok(backend: Backend) -> None:
    backend.append(0, 1)
    assert not check(backend).ok


# -- where saved lines come from ---------------------------------------------------------------


def test_file_of_lines_skips_blanks_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "heads.txt"
    path.write_text("# daily heads\n\n  00000000000000000001 aa bb  \r\nsecond\n")
    assert saved_heads(str(path), "--head 1") == [
        SavedHead("heads.txt line 3", "00000000000000000001 aa bb"),
        SavedHead("heads.txt line 4", "second"),
    ]


def test_value_that_is_no_file_is_one_line(tmp_path: Path) -> None:
    assert saved_heads("00000000000000000001 aa bb", "--head 2") == [
        SavedHead("--head 2", "00000000000000000001 aa bb")
    ]
    missing = str(tmp_path / "nope.txt")
    assert saved_heads(missing, "--head 1") == [SavedHead("--head 1", missing)]  # then reported malformed


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "heads.txt"
    path.write_text("# nothing yet\n\n")
    with pytest.raises(AuditError, match="holds no head line"):
        saved_heads(str(path), "--head 1")
