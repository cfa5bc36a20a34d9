"""Pseudonyms: stable, valid FHIR ids, unlinkable between principals, consistent across references."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from fhirgate.core.policy.deid import SafeHarbor
from fhirgate.core.policy.pseudonym import Pseudonymizer
from fhirgate.errors import InvalidInput

KEY = bytes(range(32))
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
TODAY = dt.date(2025, 6, 30)


def test_pid_shape_and_stability() -> None:
    a = Pseudonymizer(KEY, "alice")
    pid = a.pid("Patient", "pat-000001")
    assert re.fullmatch(r"p-[a-z2-7]{20}", pid) and FHIR_ID.fullmatch(pid)
    assert pid == Pseudonymizer(KEY, "alice").pid("Patient", "pat-000001")
    assert pid != a.pid("Patient", "pat-000002")
    assert pid != a.pid("Practitioner", "pat-000001")  # type is part of the input


def test_unlinkable_between_principals_and_keys() -> None:
    ids = [f"pat-{i:06d}" for i in range(200)]
    alice = {Pseudonymizer(KEY, "alice").pid("Patient", i) for i in ids}
    bob = {Pseudonymizer(KEY, "bob").pid("Patient", i) for i in ids}
    other_key = {Pseudonymizer(b"x" * 32, "alice").pid("Patient", i) for i in ids}
    assert len(alice) == 200
    assert not alice & bob and not alice & other_key


def test_pseudonym_does_not_contain_real_id() -> None:
    a = Pseudonymizer(KEY, "alice")
    for real in ("abcdef", "123456", "pat-000001"):
        assert real not in a.pid("Patient", real)


def test_ref_forms() -> None:
    a = Pseudonymizer(KEY, "alice")
    assert a.ref("Patient/pat-1") == f"Patient/{a.pid('Patient', 'pat-1')}"
    assert a.ref("Patient/pat-1/_history/3") == a.ref("Patient/pat-1")
    local = a.ref("#c1")
    assert local is not None and local.startswith("#p-") and FHIR_ID.fullmatch(local[1:])
    for dropped in ("http://other.example.org/fhir/Patient/1", "urn:uuid:0b8d4b3c-1111-2222-3333-444455556666",
                    "Patient", "patient/1", "Patient/", "Patient/a b", ""):  # fmt: skip
        assert a.ref(dropped) is None


def test_bad_arguments() -> None:
    with pytest.raises(InvalidInput):
        Pseudonymizer(b"short", "alice")
    with pytest.raises(InvalidInput):
        Pseudonymizer("not-bytes", "alice")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        Pseudonymizer(KEY, "")
    a = Pseudonymizer(KEY, "alice")
    with pytest.raises(InvalidInput):
        a.pid("patient", "1")
    with pytest.raises(InvalidInput):
        a.pid("Patient", "")
    with pytest.raises(InvalidInput):
        a.ref(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        a.date_shift_days("")


def test_date_shift_stable_bounded_nonzero() -> None:
    a, b = Pseudonymizer(KEY, "alice"), Pseudonymizer(KEY, "bob")
    shifts = [a.date_shift_days(f"pat-{i}") for i in range(300)]
    assert all(1 <= abs(s) <= 182 for s in shifts)
    assert any(s < 0 for s in shifts) and any(s > 0 for s in shifts)
    assert shifts[7] == Pseudonymizer(KEY, "alice").date_shift_days("pat-7")
    assert shifts != [b.date_shift_days(f"pat-{i}") for i in range(300)]


def test_references_consistent_across_resources() -> None:
    harbor = SafeHarbor(Pseudonymizer(KEY, "alice"), today=TODAY)
    pat, _ = harbor.resource({"resourceType": "Patient", "id": "pat-9"})
    obs, report = harbor.resource(
        {
            "resourceType": "Observation",
            "id": "obs-1",
            "status": "final",
            "subject": {"reference": "Patient/pat-9", "display": "Someone"},
            "hasMember": [{"reference": "https://elsewhere.example/Observation/2"}],
            "contained": [{"resourceType": "Specimen", "id": "sp"}],
            "specimen": {"reference": "#sp"},
        }
    )
    assert obs["subject"] == {"reference": f"Patient/{pat['id']}"}
    assert obs["id"] == harbor.pseudo.pid("Observation", "obs-1")
    assert "hasMember" not in obs and report.removed["Observation.hasMember.reference"] == {"N"}
    assert obs["specimen"]["reference"] == "#" + obs["contained"][0]["id"]
    other = SafeHarbor(Pseudonymizer(KEY, "bob"), today=TODAY).resource({"resourceType": "Patient", "id": "pat-9"})
    assert other[0]["id"] != pat["id"]
