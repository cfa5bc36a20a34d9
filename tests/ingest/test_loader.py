"""load_paths: atomic transactions, broken files, NDJSON lines, folders, events and progress."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhirgate.ingest.loader import load_paths
from fhirgate.ingest.report import LoadEvent
from fhirgate.ingest.sources import discover

P_UUID = "53917de0-aa0c-0700-105a-4f7f893c62f6"
E_UUID = "11111111-2222-3333-4444-555555555555"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"


def _patient(pid: str = "p1") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1970-01-01"}


def _obs(oid: str, status: str = "final", subject: str = "Patient/p1") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": status,
        "code": {"text": "weight"},
        "subject": {"reference": subject},
    }


def _transaction(status: str = "final", practitioner_ref: str | None = None) -> dict[str, Any]:
    enc: dict[str, Any] = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": f"urn:uuid:{P_UUID}"},
    }
    if practitioner_ref:
        enc["participant"] = [{"individual": {"reference": practitioner_ref}}]
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{P_UUID}",
                "resource": _patient(P_UUID),
                "request": {"method": "POST", "url": "Patient"},
            },
            {"fullUrl": f"urn:uuid:{E_UUID}", "resource": enc, "request": {"method": "POST", "url": "Encounter"}},
            {
                "resource": _obs("x", status, f"urn:uuid:{P_UUID}")
                | {"encounter": {"reference": f"urn:uuid:{E_UUID}"}},
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }


def _write(path: Path, doc: Any) -> Path:
    path.write_bytes(orjson.dumps(doc))
    return path


@pytest.fixture(params=["fake", "sqlite"])
def store(request: pytest.FixtureRequest) -> Any:
    name = "fake_store" if request.param == "fake" else "sqlite_store"
    return request.getfixturevalue(name)


@pytest.mark.parametrize("mode", ["full", "fast"])
def test_transaction_is_atomic_and_next_file_loads(tmp_path: Path, store: Any, mode: str) -> None:
    _write(tmp_path / "a_bad.json", _transaction(status="bogus"))
    good = _transaction()
    good["entry"][0]["fullUrl"] = "urn:uuid:" + P_UUID.replace("5", "6")
    good["entry"][1]["resource"]["subject"]["reference"] = good["entry"][0]["fullUrl"]
    good["entry"][2]["resource"]["subject"]["reference"] = good["entry"][0]["fullUrl"]
    _write(tmp_path / "b_good.json", good)
    summary = load_paths(store, [tmp_path], validation=mode)
    assert len(summary.rejected) == 1
    rej = summary.rejected[0]
    assert rej.file.endswith("a_bad.json")
    assert "entry 2" in rej.reason
    assert "Observation.status" in rej.reason
    assert "nothing stored" in rej.reason
    assert store.read("Patient", P_UUID) is None  # nothing of the bad bundle
    assert store.counts() == {"Encounter": 1, "Observation": 1, "Patient": 1}
    assert summary.loaded == {"Encounter": 1, "Observation": 1, "Patient": 1}
    stored = next(iter(store.iter_type("Observation"))).body
    assert stored["encounter"]["reference"].startswith("Encounter/")
    assert stored["subject"]["reference"] == "Patient/" + P_UUID.replace("5", "6")


def test_conditional_reference_resolution_and_rejection(tmp_path: Path, store: Any) -> None:
    practitioner = {
        "resourceType": "Practitioner",
        "id": "pr1",
        "identifier": [{"system": NPI_SYSTEM, "value": "9999"}],
    }
    _write(tmp_path / "1.json", practitioner)
    _write(tmp_path / "2.json", _transaction(practitioner_ref=f"Practitioner?identifier={NPI_SYSTEM}|9999"))
    missing = _transaction(practitioner_ref=f"Practitioner?identifier={NPI_SYSTEM}|0000")
    missing["entry"][0]["fullUrl"] = "urn:uuid:" + E_UUID.replace("1", "7")
    missing["entry"][1]["resource"]["subject"]["reference"] = missing["entry"][0]["fullUrl"]
    missing["entry"][2]["resource"]["subject"]["reference"] = missing["entry"][0]["fullUrl"]
    _write(tmp_path / "3.json", missing)
    summary = load_paths(store, [tmp_path / "1.json", tmp_path / "2.json", tmp_path / "3.json"])
    enc = next(iter(store.iter_type("Encounter"))).body
    assert enc["participant"][0]["individual"]["reference"] == "Practitioner/pr1"
    assert [r.file for r in summary.rejected] == [str(tmp_path / "3.json")]
    assert "matches no stored resource" in summary.rejected[0].reason
    assert "0000" not in summary.rejected[0].reason  # identifier values are not echoed
    assert store.counts()["Encounter"] == 1


BROKEN: list[tuple[str, bytes, str]] = [
    ("notjson.json", b"this is not json", "not valid JSON"),
    ("truncated.json", orjson.dumps(_transaction())[:-40], "not valid JSON"),
    ("empty.json", b"", "file is empty"),
    ("blank.json", b"  \n ", "file is empty"),
    ("wrongtype.json", orjson.dumps({"resourceType": "Banana", "id": "b"}), "unsupported resourceType"),
    ("unsupported.json", orjson.dumps({"resourceType": "Device", "id": "d"}), "unsupported resourceType Device"),
    ("array.json", b"[1, 2]", "must be a JSON object"),
    ("status.json", orjson.dumps(_obs("o9", status="bogus")), "Observation.status"),
    ("badref.json", orjson.dumps(_obs("o9", subject="Patient 1")), "reference must be"),
    ("badid.json", orjson.dumps(_patient("bad id!")), "Patient.id"),
    ("history.json", orjson.dumps({"resourceType": "Bundle", "type": "history"}), "Bundle.type"),
]


@pytest.mark.parametrize(("name", "data", "text"), BROKEN, ids=[b[0] for b in BROKEN])
@pytest.mark.parametrize("mode", ["full", "fast"])
def test_broken_files_rejected_with_clear_message(
    tmp_path: Path, fake_store: Any, name: str, data: bytes, text: str, mode: str
) -> None:
    (tmp_path / name).write_bytes(data)
    _write(tmp_path / "zz_ok.json", _patient("ok"))
    summary = load_paths(fake_store, [tmp_path], validation=mode)
    assert len(summary.rejected) == 1, summary.rejected
    rej = summary.rejected[0]
    assert rej.file.endswith(name), rej
    assert text in rej.reason, rej
    assert fake_store.counts() == {"Patient": 1}


def test_ndjson_is_per_line(tmp_path: Path, store: Any) -> None:
    lines = [
        orjson.dumps(_patient("p1")),
        b"",
        b'{"resourceType": "Patient", "id": "p2"',  # truncated
        orjson.dumps(_obs("o1")),
        orjson.dumps(_obs("o2", status="bogus")),
        orjson.dumps({"resourceType": "Device", "id": "d"}),
        orjson.dumps(_obs("o3")),
    ]
    (tmp_path / "data.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    summary = load_paths(store, [tmp_path])
    assert [(r.line, r.entry) for r in summary.rejected] == [(3, None), (5, None), (6, None)]
    assert "not valid JSON" in summary.rejected[0].reason
    assert "data.ndjson:5" in summary.rejected[1].describe()
    assert store.counts() == {"Observation": 2, "Patient": 1}


def test_empty_ndjson(tmp_path: Path, fake_store: Any) -> None:
    (tmp_path / "e.ndjson").write_bytes(b"\n\n")
    summary = load_paths(fake_store, [tmp_path])
    assert [r.reason for r in summary.rejected] == ["file: file is empty"]


def test_batch_is_per_entry(tmp_path: Path, store: Any) -> None:
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": _obs("o1"), "request": {"method": "PUT", "url": "Observation/o1"}},
            {"resource": _obs("o2", status="bogus"), "request": {"method": "PUT", "url": "Observation/o2"}},
            {"resource": _patient("p1"), "request": {"method": "PUT", "url": "Patient/p1"}},
        ],
    }
    summary = load_paths(store, [_write(tmp_path / "b.json", batch)])
    assert [(r.entry, "Observation.status" in r.reason) for r in summary.rejected] == [(1, True)]
    assert store.counts() == {"Observation": 1, "Patient": 1}


def test_transaction_delete_and_update(tmp_path: Path, store: Any) -> None:
    _write(tmp_path / "1.json", _obs("o1"))
    txn = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "DELETE", "url": "Observation/o1"}},
            {"resource": _patient("p1"), "request": {"method": "PUT", "url": "Patient/p1"}},
        ],
    }
    _write(tmp_path / "2.json", txn)
    summary = load_paths(store, [tmp_path / "1.json", tmp_path / "2.json"])
    assert summary.deleted == 1
    assert not summary.rejected
    assert store.read("Observation", "o1") is None
    assert store.read("Patient", "p1") is not None


def test_if_none_exist_on_reload(tmp_path: Path, store: Any) -> None:
    org = {"resourceType": "Organization", "identifier": [{"system": "https://x", "value": "1"}], "name": "Clinic"}
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "fullUrl": "urn:uuid:" + E_UUID,
                "resource": org,
                "request": {"method": "POST", "url": "Organization", "ifNoneExist": "identifier=https://x|1"},
            }
        ],
    }
    path = _write(tmp_path / "hospitalInformation1.json", batch)
    first = load_paths(store, [path])
    second = load_paths(store, [path])
    assert (first.resources, first.existing, second.resources, second.existing) == (1, 0, 0, 1)
    assert store.counts() == {"Organization": 1}


def test_store_failure_rejects_bundle(tmp_path: Path, fake_store: Any) -> None:
    fake_store.fail_when = lambda r: r["resourceType"] == "Observation"
    summary = load_paths(fake_store, [_write(tmp_path / "t.json", _transaction())])
    assert len(summary.rejected) == 1
    assert "simulated failure" in summary.rejected[0].reason
    assert fake_store.counts() == {}


def test_discover_orders_synthea_shared_files_first(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ["b.json", "sub/a.ndjson", "practitionerInformation1.json", "hospitalInformation1.json", "x.txt"]:
        (tmp_path / name).write_text("{}")
    names = [p.name for p in discover([tmp_path])]
    assert names == ["hospitalInformation1.json", "practitionerInformation1.json", "b.json", "a.ndjson"]
    with pytest.raises(Exception, match="neither a file nor a folder"):
        discover([tmp_path / "missing"])


def test_events_and_progress(tmp_path: Path, fake_store: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path / "a.json", _transaction())
    (tmp_path / "b.json").write_bytes(b"nope")
    events: list[LoadEvent] = []
    summary = load_paths(fake_store, [tmp_path], progress=True, on_event=events.append)
    kinds = [e.kind for e in events]
    assert kinds.count("file-start") == 2
    assert kinds.count("file-done") == 2
    assert kinds.count("rejected") == 1
    assert sum(e.resources for e in events if e.kind == "written") == summary.resources == 3
    data = summary.to_dict()
    assert data["resources"] == 3
    assert data["rejected"][0]["file"].endswith("b.json")
    assert "Rejected 1" in summary.render()
    assert "resources" in capsys.readouterr().err


def test_unknown_validation_mode(fake_store: Any, tmp_path: Path) -> None:
    with pytest.raises(Exception, match="validation"):
        load_paths(fake_store, [tmp_path], validation="none")  # type: ignore[arg-type]


def test_input_not_mutated_across_modes(tmp_path: Path, fake_store: Any) -> None:
    doc = _transaction()
    before = copy.deepcopy(doc)
    _write(tmp_path / "t.json", doc)
    load_paths(fake_store, [tmp_path])
    assert doc == before


@pytest.mark.slow
def test_worker_pool_gives_the_same_verdicts(tmp_path: Path, sqlite_store: Any) -> None:
    """Full mode with model checks in worker processes rejects what inline full mode rejects."""
    bad = _transaction()
    bad["entry"][0]["resource"]["birthDate"] = "Quixotica"  # only the pydantic model catches this
    _write(tmp_path / "a.json", bad)
    (tmp_path / "b.ndjson").write_bytes(
        orjson.dumps(_patient("p5")) + b"\n" + orjson.dumps(_patient("p6") | {"birthDate": "x"}) + b"\n"
    )
    summary = load_paths(sqlite_store, [tmp_path], validation="full", workers=2)
    reasons = [(r.file.rsplit("/", 1)[-1], r.entry, r.line, r.reason) for r in summary.rejected]
    assert len(reasons) == 2, reasons
    assert reasons[0][0] == "a.json"
    assert "entry 0" in reasons[0][3]
    assert "Patient.birthDate" in reasons[0][3]
    assert "Quixotica" not in reasons[0][3]
    assert reasons[1][:3] == ("b.ndjson", None, 2)
    assert sqlite_store.counts() == {"Patient": 1}
