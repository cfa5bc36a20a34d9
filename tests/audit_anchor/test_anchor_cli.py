"""`fhirgate audit verify --head`: exit codes and one PHI-free line per failing saved head."""

from __future__ import annotations

from pathlib import Path

import pytest
from anchor_support import Backend

from fhirgate.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI in process; exit code, stdout and stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def saved_head(backend: Backend, capsys: pytest.CaptureFixture[str]) -> str:
    """What `fhirgate audit head` prints, as an operator would save it."""
    code, out, _ = run(capsys, "audit", "head", "--data", backend.data)
    assert code == 0
    return out.strip()


def test_saved_heads_verify(backend: Backend, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    backend.append(0, 3)
    first = saved_head(backend, capsys)
    backend.append(3, 3)
    heads = tmp_path / "heads.txt"
    heads.write_text(f"# copied daily\n{first}\n{saved_head(backend, capsys)}\n")
    backend.append(6, 2)
    code, out, err = run(capsys, "audit", "verify", "--data", backend.data, "--head", str(heads), "--head", first)
    assert code == 0, err
    assert out.strip() == "audit chain OK: 8 records verified; 3 saved head(s) found, newest seq 6"


def test_truncated_chain_fails_against_the_saved_head(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    backend.append(0, 4)
    kept = saved_head(backend, capsys)
    backend.append(4, 5)
    lost = saved_head(backend, capsys)
    backend.truncate(6)
    assert run(capsys, "audit", "verify", "--data", backend.data)[0] == 0  # invisible without the copy
    code, out, err = run(capsys, "audit", "verify", "--data", backend.data, "--head", kept, "--head", lost)
    assert code == 4 and out == ""
    lines = err.strip().splitlines()
    assert lines[0] == "audit chain OK: 6 records verified"
    assert lines[1] == "saved heads NOT in this chain: 1 of 2"
    assert lines[2].startswith("  head seq 9 (--head 2): not found: no record at this seq; the chain ends at seq 6")
    assert len(lines) == 3 and "Traceback" not in err


def test_forged_and_mismatched_heads_name_their_seq(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    backend.append(0, 5)
    line = saved_head(backend, capsys)
    seq, hash_, _mac = line.split()
    forged = f"{seq} {hash_} {'0' * 64}"
    backend.truncate(3)
    backend.append(20, 4)
    code, _, err = run(capsys, "audit", "verify", "--data", backend.data, "--head", line, "--head", forged)
    assert code == 4
    assert "  head seq 5 (--head 1): mismatched: the record at this seq has another hash" in err
    assert "  head seq 5 (--head 2): MAC invalid: not a head line of this chain's key" in err
    assert "p2" not in err and "Traceback" not in err


def test_broken_chain_and_edited_head_both_reported(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    backend.append(0, 3)
    line = saved_head(backend, capsys)
    backend.edit_record(3)
    code, _, err = run(capsys, "audit", "verify", "--data", backend.data, "--head", line)
    assert code == 4
    assert "audit chain BROKEN" in err and "seq 3: edited" in err
    assert "head seq 3 (--head 1): mismatched: the record at this seq no longer matches the saved hash" in err


def test_malformed_value_is_reported(backend: Backend, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    backend.append(0, 1)
    code, _, err = run(capsys, "audit", "verify", "--data", backend.data, "--head", str(tmp_path / "no-such-file"))
    assert code == 4 and "head (--head 1): malformed: not a head line" in err


def test_empty_heads_file_is_an_error(backend: Backend, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    backend.append(0, 1)
    heads = tmp_path / "heads.txt"
    heads.write_text("\n")
    code, _, err = run(capsys, "audit", "verify", "--data", backend.data, "--head", str(heads))
    assert code == 1 and err.strip() == "fhirgate: error: --head 1: heads.txt holds no head line"
