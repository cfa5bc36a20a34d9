"""Every command with `--data postgresql://…`: demo data, token, a served tool call audited in the database's
chain, audit verify/tail/export, export, approvals, and a load whose workers resolve conditional references
against PostgreSQL (issue 8: "--data postgresql://… for every command")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest

from fhirgate.app import build_gateway
from fhirgate.auth.tokens import TokenVerifier
from fhirgate.cli.main import main
from fhirgate.ingest.loader import load_paths
from fhirgate.location import open_location
from fhirgate.mcp.server import build_server
from fhirgate.store.factory import open_store
from mcp import Client
from pg_server import POSTGRES_URL, drop_schema, location_url, needs_postgres, scratch_schema

pytestmark = needs_postgres


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    """A demo practice of 12 patients in a fresh PostgreSQL schema, made by `fhirgate demo-data`."""
    schema = scratch_schema("fg_cli")
    url = location_url(schema)
    assert main(["demo-data", "--data", url, "--patients", "12", "--no-progress"]) == 0
    yield url
    drop_schema(schema)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_demo_data_made_a_store_and_trusts_the_dev_issuer(url: str) -> None:
    location = open_location(url)
    assert location.exists()
    assert location.settings().trust_dev_issuer
    store = open_store(location, create=False)
    try:
        assert store.counts()["Patient"] == 12
    finally:
        store.close()
    # The load ended with ANALYZE: the planner knows the index tables are not empty (stale statistics made a
    # compartment search take a second at 1,000 patients).
    with psycopg.connect(POSTGRES_URL) as conn:
        row = conn.execute(
            "SELECT c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = 'ix_token'",
            (location.schema,),  # type: ignore[attr-defined]
        ).fetchone()
    assert row is not None and row[0] > 0


def test_token_then_served_calls_are_audited_in_one_verifiable_chain(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, token, _ = _run(capsys, "token", "--data", url, "--scope", "user/*.rs", "--sub", "pg-user")
    assert code == 0
    location = open_location(url)
    settings = location.settings()
    verifier = TokenVerifier([location.dev_trusted_issuer()], settings.resource_url)
    principal = verifier.verify(token.strip())
    gateway = build_gateway(location, key=None)
    try:
        server = build_server(gateway, transport="in-memory", principal=principal)

        async def calls() -> list[Any]:
            async with Client(server) as client:
                found = await client.call_tool("find_patients", {"name": "a"})
                who = await client.call_tool("whoami", {})
                return [found, who]

        results = anyio.run(calls)
        assert all(not r.is_error for r in results)
    finally:
        gateway.close()
    code, out, err = _run(capsys, "audit", "verify", "--data", url)
    assert code == 0, err
    assert "OK" in out
    code, out, _ = _run(capsys, "audit", "tail", "--data", url, "--json")
    tools = [json.loads(line)["name"] for line in out.splitlines() if line.strip()]
    assert "find_patients" in tools
    assert "whoami" in tools
    code, out, _ = _run(capsys, "audit", "export", "--data", url)
    assert code == 0
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert events
    assert {e["resourceType"] for e in events} == {"AuditEvent"}


def test_export_and_approvals(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = _run(capsys, "export", "--data", url, "--out", str(tmp_path / "out"), "--type", "Patient")
    assert code == 0
    assert len((tmp_path / "out" / "Patient.ndjson").read_text().splitlines()) == 12
    code, _, err = _run(capsys, "approvals", "list", "--data", url)
    assert code == 0
    assert "0 proposal(s)" in err


def test_missing_store_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    empty = location_url(scratch_schema("fg_none"))
    code, _, err = _run(capsys, "export", "--data", empty, "--out", "/nonexistent")
    assert code == 1
    assert "no store in postgresql://" in err
    assert "fhirgate demo-data --data postgresql://" in err


@pytest.mark.shared
def test_load_with_workers_resolves_conditional_references_in_postgres(synthea_dir: Path) -> None:
    schema = scratch_schema("fg_load")
    location = open_location(location_url(schema))
    store = open_store(location)
    try:
        files = sorted(synthea_dir.glob("*.json"), key=lambda p: (not p.name.endswith("Information.json"), p.name))
        summary = load_paths(store, files[:8], validation="fast", workers=2)
        assert not summary.rejected
        # Synthea encounters name practitioners by conditional reference (Practitioner?identifier=…): resolved.
        encounter = next(store.iter_type("Encounter"))
        ref = encounter.body["participant"][0]["individual"]["reference"]
        assert ref.startswith("Practitioner/")
        assert store.read("Practitioner", ref.split("/", 1)[1]) is not None
    finally:
        store.close()
        drop_schema(schema)


def test_sql_views_are_served_on_postgres_from_the_replica_and_see_new_writes(url: str) -> None:
    location = open_location(url)
    gateway = build_gateway(location, key=None)
    store = open_store(location, create=False)
    try:
        principal = TokenVerifier([location.dev_trusted_issuer()], location.settings().resource_url).verify(
            location.dev_issuer().mint(scope="user/*.rs", audience=location.settings().resource_url, subject="u")
        )
        server = build_server(gateway, transport="in-memory", principal=principal)
        sql = "SELECT count(*) AS n FROM practitioner WHERE family = 'Replicaton'"

        async def calls() -> tuple[set[str], Any, Any]:
            async with Client(server) as client:
                names = {t.name for t in (await client.list_tools()).tools}
                before = await client.call_tool("query_sql", {"sql": sql})
                store.write(
                    [{"resourceType": "Practitioner", "id": "replica-probe", "name": [{"family": "Replicaton"}]}]
                )
                after = await client.call_tool("query_sql", {"sql": sql})
                return names, before, after

        names, before, after = anyio.run(calls)
        assert {"list_views", "describe_view", "query_sql", "run_report"} <= names
        assert not before.is_error and before.structured_content["rows"] == [[0]]
        assert not after.is_error and after.structured_content["rows"] == [[1]]  # written after the replica was built
    finally:
        store.close()
        gateway.close()
