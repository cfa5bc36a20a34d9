"""Audit records: canonical JSON, no raw arguments, value-free queries, strict field checks."""

from __future__ import annotations

import hashlib

import orjson
import pytest
from audit_helpers import make_record
from hypothesis import given
from hypothesis import strategies as st

from fhirgate.audit.record import AuditRecord, clean_query, digest_arguments, instant_now
from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.scopes import ScopeSet
from fhirgate.errors import AuditError, InvalidInput

PHI_ARGS = {"name": "Zebulon Quixote", "birthdate": "1931-02-03", "phone": "555-0100"}


def test_new_keeps_only_the_digest_of_arguments() -> None:
    rec = make_record(arguments=PHI_ARGS, query_params=PHI_ARGS, resource_type="Patient")
    text = rec.to_json()
    for value in PHI_ARGS.values():
        assert value.encode() not in text
    assert rec.args_digest == hashlib.sha256(orjson.dumps(PHI_ARGS, option=orjson.OPT_SORT_KEYS)).hexdigest()
    assert rec.query == "Patient?birthdate=*&name=*&phone=*"


def test_digest_is_order_independent_and_value_sensitive() -> None:
    assert digest_arguments({"a": 1, "b": 2}) == digest_arguments({"b": 2, "a": 1})
    assert digest_arguments({"a": 1}) != digest_arguments({"a": 2})
    assert digest_arguments(None) == digest_arguments({})
    digest_arguments({"when": object()})  # non-JSON values do not raise


@pytest.mark.parametrize(
    ("rtype", "params", "expected"),
    [
        ("Observation", ["patient", "code", "patient"], "Observation?code=*&patient=*"),
        ("Observation", {"code:text": "x", "_count": "5"}, "Observation?_count=*&code:text=*"),
        ("Patient", [], "Patient"),
        (None, ["_id"], "?_id=*"),
        (None, None, None),
        # A caller can put a value where a name should be; it must not reach the log.
        ("Patient", ["name=Zebulon", "Zebulon Quixote", "1931-02-03"], "Patient?_invalid=*"),
        ("Zebulon Quixote", ["name"], "_?name=*"),
    ],
)
def test_clean_query_keeps_names_only(rtype: str | None, params: object, expected: str | None) -> None:
    assert clean_query(rtype, params) == expected  # type: ignore[arg-type]


@given(st.dictionaries(st.text(min_size=1, max_size=20), st.text(min_size=6, max_size=20), max_size=5))
def test_clean_query_never_contains_values(params: dict[str, str]) -> None:
    query = clean_query("Patient", params) or ""
    parts = [part for part in query.partition("?")[2].split("&") if part]
    for part in parts:
        name, eq, value = part.partition("=")
        assert eq == "="
        assert value == "*"
        assert name == "_invalid" or name in params
    assert len(parts) <= len(params)


def test_principal_fields_are_copied() -> None:
    principal = Principal(
        sub="u1",
        issuer="https://issuer.example",
        scopes=ScopeSet.of("user/Patient.rs", "openid"),
        client_id="app",
        fhir_user="Practitioner/9",
        patient="p7",
        purpose_of_use=("TREAT",),
    )
    rec = make_record(principal=principal)
    assert (rec.sub, rec.issuer, rec.client_id, rec.fhir_user, rec.patient_context) == (
        "u1",
        "https://issuer.example",
        "app",
        "Practitioner/9",
        "p7",
    )
    assert rec.scopes == ("user/Patient.rs", "openid")
    assert rec.purpose_of_use == ("TREAT",)


def test_json_is_canonical_and_round_trips() -> None:
    rec = make_record(3, patients=["b", "a", "b"], references=["Observation/2", "Observation/1"])
    assert rec.patients == ("b", "a")  # de-duplicated, order kept
    text = rec.to_json()
    keys = list(orjson.loads(text))
    assert keys == sorted(keys)
    assert b" " not in text.replace(b"tools/call", b"")
    assert AuditRecord.from_row(text) == rec
    assert AuditRecord.from_row(text.decode()) == rec


@pytest.mark.parametrize("bad", [b"not json", b"[]", b'{"time": "x"}', b"{}"])
def test_from_row_rejects_malformed(bad: bytes) -> None:
    with pytest.raises(AuditError):
        AuditRecord.from_row(bad)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("outcome", "maybe"),
        ("transport", "carrier-pigeon"),
        ("balp_kind", "patch"),  # not a kind fhirgate records (create/update/delete/operation are)
        ("time", "2024-01-01T00:00:00+01:00"),
        ("request_id", ""),
    ],
)
def test_invalid_fields_raise_invalid_input(field: str, value: str) -> None:
    with pytest.raises(InvalidInput) as info:
        make_record(**{field: value})
    assert field in str(info.value)


def test_instant_now_is_a_utc_fhir_instant() -> None:
    value = instant_now()
    assert value.endswith("Z")
    assert len(value) == 24
    make_record(time=value)
