"""Property tests: malformed input never raises, planted identifiers never survive, suppression invariants."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhirgate.core.policy.deid import DeidReport, SafeHarbor, _Walk
from fhirgate.core.policy.pseudonym import Pseudonymizer
from fhirgate.core.policy.suppression import COLUMN_TYPES, suppress_rows

TODAY = dt.date(2025, 6, 30)
HARBOR = SafeHarbor(Pseudonymizer(b"h" * 32, "prop"), today=TODAY)
TYPES = ["Patient", "Observation", "Encounter", "Device", "Coverage", "DocumentReference", "Bundle", "Nope"]
KEYS = [
    *("id", "name", "text", "identifier", "telecom", "address", "birthDate", "subject", "code", "value"),
    *("valueString", "extension", "url", "contained", "resource", "entry", "reference", "display", "coding"),
    *("status", "photo", "note", "period", "start", "given", "family", "line", "postalCode", "_birthDate", "meta"),
]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=5),
    max_leaves=30,
)


@SETTINGS
@given(rtype=st.sampled_from(TYPES), body=st.dictionaries(st.sampled_from(KEYS), json_values, max_size=8))
def test_malformed_resources_never_raise(rtype: str, body: dict[str, Any]) -> None:
    res = {"resourceType": rtype, **body}
    _Walk(HARBOR, DeidReport(), frozenset({"x"})).resource(res, "", 0)  # no bug hidden by the fail-closed net
    out, report = HARBOR.resource(res)
    orjson.dumps(out)
    assert out == {} or out["resourceType"] == rtype
    if isinstance(body.get("id"), str) and "id" in out:
        assert re.fullmatch(r"p-[a-z2-7]{20}", out["id"])
    report.as_dict()


SECRET = st.text(alphabet="QXZJKVW", min_size=8, max_size=12)  # letters no clinical code or URL uses


@SETTINGS
@given(secret=SECRET, where=st.integers(0, 6))
def test_planted_identifiers_never_survive(secret: str, where: int) -> None:
    patient: dict[str, Any] = {"resourceType": "Patient", "id": "p1", "gender": "other"}
    plant = [
        ("name", [{"family": secret}]),
        ("telecom", [{"system": "phone", "value": secret}]),
        ("identifier", [{"value": secret}]),
        ("address", [{"line": [secret], "city": secret, "state": "IL"}]),
        ("extension", [{"url": "http://x", "valueString": secret}]),
        ("text", {"status": "generated", "div": f"<div>{secret}</div>"}),
        ("contact", [{"name": {"text": secret}, "telecom": [{"value": secret}]}]),
    ][where]
    patient[plant[0]] = plant[1]
    out, _ = HARBOR.resource(patient)
    assert secret not in orjson.dumps(out).decode()
    assert out["gender"] == "other"


cells = st.one_of(st.none(), st.booleans(), st.integers(-5, 200), st.floats(allow_nan=False), st.text(max_size=20))


@SETTINGS
@given(
    specs=st.dictionaries(
        st.sampled_from(["a", "b", "c"]), st.sampled_from([*sorted(COLUMN_TYPES), "id:Patient"]), min_size=1
    ),
    rows=st.lists(st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), cells), max_size=5),
)
def test_rows_never_raise(specs: dict[str, str], rows: list[dict[str, Any]]) -> None:
    out, _ = HARBOR.rows_with_report(rows, specs)
    assert len(out) == len(rows)
    for row, new in zip(rows, out, strict=True):
        assert set(new) == set(row)
        for name, value in new.items():
            if specs.get(name) in ("string", "markdown", "uri") or name not in specs:
                assert value is None


@SETTINGS
@given(table=st.lists(st.lists(st.integers(0, 40), min_size=3, max_size=3), min_size=1, max_size=6))
def test_suppression_invariants(table: list[list[int]]) -> None:
    cols = ["x", "y", "z"]
    rows = [dict(zip(cols, values, strict=True)) for values in table]
    out = suppress_rows(rows, cols)
    for original, shown in zip(rows, out, strict=True):
        for col in cols:
            assert shown[col] == "<11" or shown[col] == original[col]
            assert not (isinstance(shown[col], int) and 0 < shown[col] < 11)
    for col in cols:
        hidden = sum(1 for r in out if r[col] == "<11")
        assert hidden != 1 or len(out) == 1
    for r in out:
        assert sum(1 for c in cols if r[c] == "<11") != 1
