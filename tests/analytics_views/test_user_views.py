"""User views through the `views` verbs (handlers called directly), and the errors bad ones get."""

# ruff: noqa: E501 - test data reads best on one line.

from __future__ import annotations

import argparse
import json
from pathlib import Path

import orjson
import pytest
from helpers import q

from fhirgate.analytics.sof import ViewDefinitionError
from fhirgate.analytics.views.maintenance import PracticeViews
from fhirgate.analytics.views.registry import check_name, user_view
from fhirgate.cli import views_admin
from fhirgate.config import DataDir
from fhirgate.errors import ConfigError, FhirgateError, InvalidInput
from fhirgate.store.factory import open_store
from fhirgate.store.sqlite.store import SqliteStore

BP = {
    "resourceType": "ViewDefinition",
    "name": "blood_pressure",
    "resource": "Observation",
    "where": [{"path": "code.coding.where(code = '85354-9').exists()"}],
    "select": [
        {
            "column": [
                {"name": "id", "path": "getResourceKey()", "type": "id"},
                {"name": "patient_id", "path": "subject.getReferenceKey(Patient)", "type": "id"},
                {"name": "effective", "path": "effective.ofType(dateTime)", "type": "dateTime"},
                {"name": "systolic", "path": "component.where(code.coding.code = '8480-6').value.ofType(Quantity).value.first()", "type": "decimal"},
            ]
        }
    ],
}  # fmt: skip


def _args(data: Path, **kw: object) -> argparse.Namespace:
    return argparse.Namespace(data=str(data), key_file=None, **kw)


@pytest.fixture
def data_dir(tmp_path: Path, fresh: SqliteStore) -> Path:
    """A data directory whose store.db is a copy of the demo practice."""
    fresh._conn().execute("VACUUM INTO ?", (str(tmp_path / "d" / "store.db"),)) if (
        tmp_path / "d"
    ).mkdir() is None else None
    return tmp_path / "d"


def _write(path: Path, doc: object) -> Path:
    path.write_bytes(orjson.dumps(doc))
    return path


def test_add_then_list_then_maintained_by_another_process(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = open_store(DataDir(data_dir))  # a running server opened before the view was added
    try:
        assert views_admin.cmd_add(_args(data_dir, file=str(_write(tmp_path / "bp.json", BP)))) == 0
        out = capsys.readouterr().out
        assert "view blood_pressure (Observation) added:" in out
        assert views_admin.cmd_list(_args(data_dir, json=True)) == 0
        listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        names = [v["name"] for v in listed]
        assert names[:13] == sorted(names[:13]) and "appointment" in names and names[-1] == "blood_pressure"
        bp = listed[-1]
        assert (
            bp["builtin"] is False and bp["rows"] > 0 and bp["columns"] == ["id", "patient_id", "effective", "systolic"]
        )
        assert all(v["rows"] > 0 for v in listed if v["name"] != "consent")
        # the server's store notices the new view on its next write and maintains it
        obs = {"resourceType": "Observation", "id": "bp-new", "status": "final", "subject": {"reference": "Patient/p9"},
               "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
               "component": [{"code": {"coding": [{"code": "8480-6"}]}, "valueQuantity": {"value": 128}}]}  # fmt: skip
        server.write([obs])
        rows = (
            server._conn()
            .execute("SELECT patient_id, systolic, _rid > 0 FROM blood_pressure WHERE id = 'bp-new'")
            .fetchall()
        )  # type: ignore[attr-defined]
        assert rows == [("p9", 128.0, 1)]
    finally:
        server.close()
    # plain list output names the kind and the rows
    views_admin.cmd_list(_args(data_dir, json=False))
    text = capsys.readouterr().out
    assert "blood_pressure" in text and "user" in text and "built-in" in text


def test_add_replaces_a_user_view_and_rebuild_one_or_all(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    views_admin.cmd_add(_args(data_dir, file=str(_write(tmp_path / "bp.json", BP))))
    changed = json.loads(json.dumps(BP))
    changed["select"][0]["column"].append({"name": "status", "path": "status", "type": "code"})
    views_admin.cmd_add(_args(data_dir, file=str(_write(tmp_path / "bp2.json", changed))))
    capsys.readouterr()
    assert views_admin.cmd_rebuild(_args(data_dir, name="blood_pressure")) == 0
    assert capsys.readouterr().out.split()[0] == "blood_pressure"
    assert views_admin.cmd_rebuild(_args(data_dir, name=None)) == 0
    assert len(capsys.readouterr().out.splitlines()) == 14
    store = open_store(DataDir(data_dir))
    try:
        cols = [r[1] for r in store._conn().execute('PRAGMA table_info("blood_pressure")')]  # type: ignore[attr-defined]
        assert cols == ["id", "patient_id", "effective", "systolic", "status", "_rid"]
    finally:
        store.close()
    with pytest.raises(InvalidInput, match="no view 'nope'"):
        views_admin.cmd_rebuild(_args(data_dir, name="nope"))


@pytest.mark.parametrize(
    "name",
    ["Bad", "1abc", "a-b", "a" * 64, "", "resources", "history", "params", "compartment", "store_meta", "views_meta",
     "ix_token", "ix_anything", "sqlite_master", "sqlite_x", "a b", 'x"; DROP TABLE resources; --', None, 5],
)  # fmt: skip
def test_bad_or_reserved_names_are_refused(name: object) -> None:
    with pytest.raises(InvalidInput) as info:
        check_name(name)
    assert info.value.param == "name" and "[a-z][a-z0-9_]" in str(info.value)


def test_good_names_pass() -> None:
    for name in ("a", "bp_daily", "x" * 63, "ixx", "history2"):
        assert check_name(name) == name


@pytest.mark.parametrize(
    ("doc", "error", "match"),
    [
        ({**BP, "name": "patient"}, InvalidInput, "built-in"),
        ({k: v for k, v in BP.items() if k != "name"}, InvalidInput, "no name"),
        ({**BP, "resourceType": "Patient"}, InvalidInput, "ViewDefinition"),
        ([BP], InvalidInput, "JSON object"),
        ({**BP, "resource": "NotAType"}, FhirgateError, None),
        ({**BP, "resource": "Device"}, FhirgateError, "Device"),
        ({**BP, "select": [{"column": [{"name": "_rid", "path": "id"}]}]}, ViewDefinitionError, "name"),
        ({**BP, "select": [{"column": [{"name": "rowid", "path": "id"}]}]}, InvalidInput, "reserved"),
        (
            {**BP, "select": [{"column": [{"name": "Ab", "path": "id"}, {"name": "ab", "path": "id"}]}]},
            InvalidInput,
            "repeated",
        ),
        (
            {**BP, "select": [{"column": [{"name": "a", "path": "id"}, {"name": "a", "path": "id"}]}]},
            FhirgateError,
            None,
        ),
        ({**BP, "select": [{"column": [{"name": "a", "path": "foo("}]}]}, InvalidInput, "evaluated|fails on"),
        (
            {**BP, "where": [], "select": [{"column": [{"name": "a", "path": "foo("}]}]},
            InvalidInput,
            "cannot be evaluated",
        ),
        ({**BP, "where": [], "select": [{"column": [{"name": "a", "path": "id | status"}]}]}, InvalidInput, "fails on"),
        ({**BP, "select": []}, FhirgateError, None),
    ],
)
def test_forbidden_definitions_get_clear_errors(
    data_dir: Path, tmp_path: Path, doc: object, error: type[Exception], match: str | None
) -> None:
    with pytest.raises(error, match=match):
        views_admin.cmd_add(_args(data_dir, file=str(_write(tmp_path / "v.json", doc))))
    store = open_store(DataDir(data_dir))
    try:
        assert q(store, "SELECT count(*) FROM views_meta WHERE builtin = 0") == [(0,)]  # type: ignore[arg-type]
    finally:
        store.close()


def test_a_name_taken_by_another_table_is_refused(data_dir: Path, tmp_path: Path) -> None:
    store = open_store(DataDir(data_dir))
    store._conn().execute("CREATE TABLE someone_elses(x)")  # type: ignore[attr-defined]
    store.close()
    with pytest.raises(InvalidInput, match="already exists"):
        views_admin.cmd_add(_args(data_dir, file=str(_write(tmp_path / "v.json", {**BP, "name": "someone_elses"}))))


def test_unreadable_files(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="FILE: cannot read"):
        views_admin.cmd_add(_args(data_dir, file=str(tmp_path / "missing.json")))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InvalidInput, match="not valid JSON"):
        views_admin.cmd_add(_args(data_dir, file=str(tmp_path / "bad.json")))


def test_no_store_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        views_admin.cmd_list(_args(tmp_path / "none", json=False))


def test_add_verbs_parse() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="verb")

    def add_data(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data")
        p.add_argument("--key-file")

    views_admin.add_verbs(sub, add_data)
    args = parser.parse_args(["add", "--data", "D", "v.json"])
    assert args.handler is views_admin.cmd_add and args.file == "v.json"
    assert parser.parse_args(["rebuild", "--data", "D"]).name is None
    assert parser.parse_args(["list", "--json"]).json is True


def test_user_view_spec_never_builtin() -> None:
    spec = user_view(BP)
    assert not spec.builtin and spec.resource == "Observation" and len(spec.digest) == 64


def test_broken_user_view_is_listed_not_maintained(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    views_admin.cmd_add(_args(data_dir, file=str(_write(tmp_path / "bp.json", BP))))
    store = open_store(DataDir(data_dir))
    store._conn().execute(
        "UPDATE views_meta SET definition = '{\"resourceType\": \"ViewDefinition\"}' WHERE name = 'blood_pressure'"
    )  # type: ignore[attr-defined]
    store.close()
    store = open_store(DataDir(data_dir))  # opens fine
    try:
        assert isinstance(store.derived, PracticeViews)  # type: ignore[attr-defined]
        assert "blood_pressure" not in store.derived.names()  # type: ignore[attr-defined]
    finally:
        store.close()
    views_admin.cmd_list(_args(data_dir, json=False))
    assert "NOT MAINTAINED" in capsys.readouterr().out
