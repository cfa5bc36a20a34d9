"""SMART App Launch 2.x scope parsing, as table tests built from the spec's own examples."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhirgate.core.policy.scopes import KNOWN_NON_RESOURCE_SCOPES, Scope, ScopeSet, parse_scope
from fhirgate.errors import InvalidInput

OBS_LAB = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
COND_HC = "http://terminology.hl7.org/CodeSystem/condition-category|health-concern"

# (scope text, context, type, letters, constraints) - examples from SMART App Launch 2.x
# "Scopes for requesting clinical data" and its v1 compatibility table.
VALID = [
    ("patient/Observation.rs", "patient", "Observation", "rs", ()),
    ("user/*.cruds", "user", "*", "cruds", ()),
    ("patient/Patient.r", "patient", "Patient", "r", ()),
    ("user/Encounter.cu", "user", "Encounter", "cu", ()),
    ("patient/*.rs", "patient", "*", "rs", ()),
    ("system/Observation.s", "system", "Observation", "s", ()),
    ("user/Appointment.cruds", "user", "Appointment", "cruds", ()),
    ("patient/Observation.c", "patient", "Observation", "c", ()),
    ("user/Observation.crd", "user", "Observation", "crd", ()),
    (f"patient/Observation.rs?category={OBS_LAB}", "patient", "Observation", "rs", (("category", OBS_LAB),)),
    (f"patient/Condition.rs?category={COND_HC}", "patient", "Condition", "rs", (("category", COND_HC),)),
    (
        "patient/Observation.rs?category=vital-signs&code=http://loinc.org|8867-4",
        "patient",
        "Observation",
        "rs",
        (("category", "vital-signs"), ("code", "http://loinc.org|8867-4")),
    ),
    # percent-encoded values are decoded
    ("user/Observation.rs?category=a%7Cb", "user", "Observation", "rs", (("category", "a|b"),)),
    # v1 scopes map onto v2 letters
    ("patient/*.read", "patient", "*", "rs", ()),
    ("user/Observation.write", "user", "Observation", "cud", ()),
    ("system/*.*", "system", "*", "cruds", ()),
    ("patient/Observation.read", "patient", "Observation", "rs", ()),
    ("user/MedicationRequest.*", "user", "MedicationRequest", "cruds", ()),
]


@pytest.mark.parametrize(("text", "context", "rtype", "letters", "constraints"), VALID)
def test_valid_scopes_parse(text: str, context: str, rtype: str, letters: str, constraints: tuple[object, ...]) -> None:
    scope = parse_scope(text)
    assert isinstance(scope, Scope)
    assert scope.context == context
    assert scope.resource_type == rtype
    assert scope.interactions == frozenset(letters)
    assert scope.letters == letters
    assert scope.constraints == constraints
    assert scope.raw == text
    # the lenient parser agrees and records no rejection
    parsed = ScopeSet.parse(text)
    assert parsed.resources == (scope,)
    assert parsed.rejected == ()


INVALID = [
    ("patient/Observation.rx", "permissions"),
    ("patient/Observation.sr", "permissions"),  # wrong order
    ("patient/Observation.rr", "permissions"),
    ("patient/Observation.dc", "permissions"),
    ("patient/Observation.", "permissions"),  # empty permissions
    ("patient/Observation.RS", "permissions"),
    ("patient/Observation.reads", "permissions"),
    ("foo/Patient.rs", "context"),
    ("Patient/Observation.rs", "context"),
    ("patient/observation.rs", "resource type"),
    ("patient/Obs-ervation.rs", "resource type"),
    ("patient/.rs", "resource type"),
    ("patient/Observation", "missing '.'"),
    ("patient/Observation.rs?", "empty constraint"),
    ("patient/Observation.rs?category", "lacks '='"),
    ("patient/Observation.rs?category=", "empty value"),
    ("patient/Observation.rs?=x", "search parameter"),
    ("patient/Observation.rs?a=b&", "lacks '='"),
    ("user/*.r?bad name=x", None),  # whitespace: a different token in a scope string
]


@pytest.mark.parametrize(("text", "why"), INVALID)
def test_invalid_scopes_raise_strictly(text: str, why: str | None) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_scope(text)
    assert info.value.param == "scope"
    if why is not None:
        assert why in info.value.problem


@pytest.mark.parametrize(("text", "why"), [row for row in INVALID if row[1] is not None])
def test_invalid_scopes_are_rejected_leniently_and_grant_nothing(text: str, why: str) -> None:
    scopes = ScopeSet.parse(f"openid {text} fhirUser")
    assert scopes.resources == ()
    assert [raw for raw, _ in scopes.rejected] == [text]
    assert why in scopes.rejected[0][1]
    for rtype in ("Observation", "Patient", "*"):
        for letter in "cruds":
            assert scopes.granting(rtype, letter) == ()


@pytest.mark.parametrize("text", [*sorted(KNOWN_NON_RESOURCE_SCOPES), "email", "mcp:tools", "urn:x:y"])
def test_non_resource_scopes_are_kept_but_grant_nothing(text: str) -> None:
    assert parse_scope(text) is None
    scopes = ScopeSet.parse(text)
    assert scopes.other == (text,)
    assert scopes.resources == ()
    assert scopes.rejected == ()
    assert text in scopes
    assert scopes.granting("Patient", "r") == ()


def test_parse_scope_rejects_empty_and_whitespace() -> None:
    for bad in ["", " patient/Patient.r", "patient/Patient.r user/Patient.r", "x" * 2000]:
        with pytest.raises(InvalidInput):
            parse_scope(bad)


@pytest.mark.parametrize(
    ("scope", "rtype", "letter", "expected"),
    [
        ("patient/Observation.rs", "Observation", "r", True),
        ("patient/Observation.rs", "Observation", "s", True),
        ("patient/Observation.rs", "Observation", "c", False),
        ("patient/Observation.rs", "Condition", "r", False),
        ("patient/*.r", "Condition", "r", True),
        ("patient/*.r", "Condition", "s", False),
        ("user/Observation.write", "Observation", "r", False),
        ("user/Observation.write", "Observation", "d", True),
        ("system/*.*", "Anything", "u", True),
        ("patient/Observation.rs", "Observation", "x", False),
        ("patient/Observation.rs", "Observation", "rs", False),  # one letter at a time
        ("patient/Observation.rs", "*", "r", False),  # a typed scope never covers "all types"
    ],
)
def test_covers(scope: str, rtype: str, letter: str, expected: bool) -> None:
    parsed = parse_scope(scope)
    assert parsed is not None
    assert parsed.covers(rtype, letter) is expected


def test_scope_set_mixed_and_helpers() -> None:
    text = "openid fhirUser launch/patient  patient/Observation.rs user/Encounter.cu patient/Observation.sr x/Y.r"
    scopes = ScopeSet.parse(text)
    assert [s.raw for s in scopes.resources] == ["patient/Observation.rs", "user/Encounter.cu"]
    assert scopes.other == ("openid", "fhirUser", "launch/patient")
    assert [r for r, _ in scopes.rejected] == ["patient/Observation.sr", "x/Y.r"]
    assert scopes.raw == " ".join(text.split())
    assert scopes.has_context("patient")
    assert scopes.has_context("user")
    assert not scopes.has_context("system")
    assert [s.raw for s in scopes.granting("Observation", "s")] == ["patient/Observation.rs"]
    assert scopes.granting("Encounter", "r") == ()
    assert [s.raw for s in scopes.granting("Encounter", "u")] == ["user/Encounter.cu"]


def test_scope_set_never_raises_for_token_input() -> None:
    for junk in [None, "", "   ", "\x00\x01", "/" * 50, "a" * 5000, "patient/" + "A" * 2000 + ".r", "?&=|.*/"]:
        scopes = ScopeSet.parse(junk)
        assert scopes.resources == ()


def test_duplicates_collapse_and_canonical_form() -> None:
    scopes = ScopeSet.parse("patient/*.read patient/*.read")
    assert len(scopes.resources) == 1
    assert scopes.resources[0].canonical == "patient/*.rs"
    scope = parse_scope(f"patient/Observation.read?category={OBS_LAB}")
    assert scope is not None
    assert scope.canonical == f"patient/Observation.rs?category={OBS_LAB}"


def test_empty_scope_set() -> None:
    scopes = ScopeSet.parse("")
    assert not scopes
    assert scopes.raw == ""
    assert not scopes.has_context("patient")
    assert ScopeSet() == scopes


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("patientusersym/*.ObservcrudsRW?=&|%:_ -726")), max_size=60))
def test_lenient_parse_never_raises_and_agrees_with_strict(text: str) -> None:
    scopes = ScopeSet.parse(text)
    for scope in scopes.resources:
        assert parse_scope(scope.raw) == scope
        assert scope.interactions
        assert scope.interactions <= frozenset("cruds")
        reparsed = parse_scope(scope.canonical)
        assert reparsed is not None
        assert reparsed.interactions == scope.interactions
        assert reparsed.constraints == scope.constraints
    for raw, _reason in scopes.rejected:
        with pytest.raises(InvalidInput):
            parse_scope(raw)
