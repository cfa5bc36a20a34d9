"""Cross-patient isolation as a property: under a patient/ token, no tool call, whatever its
parameters (types, _include/_revinclude, chaining, grep patterns, everything, reads of other
patients' ids, foreign cursors), ever returns another patient's data.

Oracle: (1) no other patient's id appears anywhere in the result, error text included; (2) every
`Type/id` in the result that names a stored resource in some patient compartment is in the token
patient's compartment.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp_support import practice_data, principal

from fhirgate.app import build_gateway
from fhirgate.core.fhir.compartment import patients_of
from fhirgate.core.fhir.definitions import SUPPORTED_TYPES
from fhirgate.location import open_location
from fhirgate.service.gateway import Gateway
from mcp import Client
from pg_server import drop_schema, location_url, needs_postgres, scratch_schema

REF = re.compile(r"\b(" + "|".join(SUPPORTED_TYPES) + r")/([A-Za-z0-9\-.]{1,64})")


@dataclass(frozen=True)
class World:
    a: str
    others: tuple[str, ...]
    a_refs: tuple[tuple[str, str], ...]
    other_refs: tuple[tuple[str, str], ...]
    shared_refs: tuple[tuple[str, str], ...]
    foreign_cursor: str


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=needs_postgres)])
def practice(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, synthea_dir: Any
) -> Iterator[Any]:
    """The practice in a data directory, and the same practice in a PostgreSQL location (issue 8)."""
    root = tmp_path_factory.mktemp("isolation")
    if request.param == "sqlite":
        yield practice_data.load_practice(root, synthea_dir)
        return
    schema = scratch_schema("fg_iso")
    try:
        yield practice_data.load_practice(root, synthea_dir, open_location(location_url(schema)))
    finally:
        drop_schema(schema)


@pytest.fixture(scope="module")
def gateway(practice: Any) -> Iterator[Gateway]:
    gw = build_gateway(practice.data_dir, key=None)
    yield gw
    gw.close()


@pytest.fixture(scope="module")
def world(gateway: Gateway, practice: Any) -> World:
    store = gateway.store
    patients = sorted(r.id for r in store.iter_type("Patient"))
    a = practice.patient_a
    others = tuple(p for p in patients if p != a)

    def refs_of(pid: str, n: int) -> list[tuple[str, str]]:
        page = store.compartment_page(pid, count=n)
        return [(r.resource_type, r.id) for r in page.matches]

    other_refs = [ref for pid in others[:3] for ref in refs_of(pid, 40)]
    shared = [("Practitioner", r.id) for r, _ in zip(store.iter_type("Practitioner"), range(5), strict=False)]
    shared += [("Organization", r.id) for r, _ in zip(store.iter_type("Organization"), range(5), strict=False)]
    from fhirgate.service.context import RequestContext

    user = RequestContext(principal("user/*.rs", sub="other-user"))
    cursor = gateway.patient_everything(user, others[0], count=5)["page"]["next_cursor"]
    return World(a, others, tuple(refs_of(a, 60)), tuple(other_refs), tuple(shared), cursor)


TYPES = st.sampled_from(SUPPORTED_TYPES)
EVERYTHING_TYPES = ["Observation", "Encounter", "DocumentReference", "Patient", "Appointment"]
WORDS = st.sampled_from(["a", "dizz", "blood", "Patient", "pressure", "note", "IGNORE", "s", "e"])


def calls(w: World) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    any_patient = st.sampled_from([w.a, *w.others, "nobody"])
    any_ref = st.sampled_from([*w.a_refs, *w.other_refs, *w.shared_refs])
    other = st.sampled_from(w.others)
    includes = st.sampled_from(
        ["Observation:subject", "Observation:patient", "Encounter:subject", "Observation:performer",
         "Condition:subject", "Encounter:participant", "Immunization:patient", "MedicationRequest:subject"]
    )  # fmt: skip
    param_sets = st.one_of(
        st.just({}),
        other.map(lambda p: {"patient": p}),
        other.map(lambda p: {"subject": f"Patient/{p}"}),
        any_ref.map(lambda r: {"_id": r[1]}),
        includes.map(lambda i: {"_include": i}),
        includes.map(lambda i: {"_revinclude": i}),
        WORDS.map(lambda n: {"subject:Patient.name": n}),
        WORDS.map(lambda n: {"patient.name": n}),
        other.map(lambda p: {"_revinclude": "Observation:subject", "_id": p}),
        st.just({"_sort": "-date", "_revinclude": "Provenance:target"}),
    )
    search = st.builds(
        lambda t, p, c: ("search_resources", {"resource_type": t, "params": p, "count": c}),
        TYPES,
        param_sets,
        st.integers(1, 100),
    )
    read = any_ref.map(lambda r: ("read_resource", {"resource_type": r[0], "id": r[1], "format": "fhir"}))
    everything = st.builds(
        lambda p, types, cur: (
            "patient_everything",
            {"patient_id": p, "count": 100, **({"types": types} if types else {}), **({"cursor": cur} if cur else {})},
        ),
        any_patient,
        st.one_of(st.none(), st.lists(st.sampled_from(EVERYTHING_TYPES), min_size=1, max_size=3)),
        st.sampled_from([None, None, w.foreign_cursor]),
    )  # fmt: skip
    grep = st.builds(
        lambda p, pat, rx: ("grep_record", {"patient_id": p, "pattern": pat, "regex": rx, "max_hits": 50}),
        any_patient,
        WORDS,
        st.booleans(),
    )
    summary = any_patient.map(lambda p: ("patient_summary", {"patient_id": p}))
    find = WORDS.map(lambda n: ("find_patients", {"name": n, "count": 50}))
    return st.one_of(search, read, everything, grep, summary, find)


def check_isolated(store: Any, w: World, payload: str, asked: str = "") -> None:
    """`asked` is the caller's own arguments: an error may echo an id the caller sent, which is no leak."""
    for value in set(re.findall(r"[A-Za-z0-9\-.]{8,}", asked)):
        payload = payload.replace(value, "<asked>")
    for other in w.others:
        assert other not in payload, "another patient's id leaked"
    for rtype, rid in set(REF.findall(payload)):
        stored = store.read(rtype, rid)
        if stored is None:
            continue
        holders = patients_of(stored.body)
        assert not holders or w.a in holders, f"{rtype}/{rid} belongs to another compartment"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_patient_token_never_sees_other_patients(make_server: Any, gateway: Gateway, world: World, data: Any) -> None:
    batch = data.draw(st.lists(calls(world), min_size=1, max_size=4))
    scope = data.draw(
        st.sampled_from(["patient/*.rs", "patient/*.read launch/patient", "patient/Observation.rs patient/Patient.r"])
    )
    server = make_server(principal(scope, patient=world.a, sub="patient-a"))

    async def run() -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        async with Client(server) as client:
            for name, args in batch:
                result = await client.call_tool(name, args)
                texts = [c.text for c in result.content if hasattr(c, "text")]
                # Only an error may echo the caller's own arguments (e.g. "Patient/<id> was not found").
                asked = json.dumps(args) if result.is_error else ""
                out.append((json.dumps(result.structured_content) + "\n".join(texts), asked))
        return out

    for payload, asked in anyio.run(run):
        check_isolated(gateway.store, world, payload, asked)


def test_oracle_detects_a_leak(gateway: Gateway, world: World) -> None:
    """The property's oracle is not vacuous: a user-level token does see other patients."""
    server_payloads: list[str] = []
    from fhirgate.service.context import RequestContext

    ctx = RequestContext(principal("user/*.rs"))
    out = gateway.search_resources(ctx, "Observation", {"patient": world.others[0]}, count=5)
    server_payloads.append(json.dumps(out))
    with pytest.raises(AssertionError):
        check_isolated(gateway.store, world, server_payloads[0])
