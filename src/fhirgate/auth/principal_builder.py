"""Turns verified JWT claims into a Principal, normalizing the SMART context claims.

Claims used (SMART App Launch 2.x §"Token response", RFC 9068 §2.2, RFC 8693 §4.2): `sub`, `iss`,
`scope` (space separated; `scp` list accepted), `client_id` (or `azp`), `fhirUser` (absolute URL or
`Type/id`, stored as `Type/id`), `patient`, `encounter`, `purpose_of_use` (list or string), `jti`, `exp`,
and the policy's role claim (default `fhirgate_role`).
A claim with the wrong shape fails the whole token (`token.invalid_claim`): guessing what a malformed
context claim meant could widen access.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.scopes import ScopeSet
from fhirgate.errors import AuthenticationError

# FHIR R4 §2.24.0.1 id: [A-Za-z0-9\-\.]{1,64}
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
# SMART 2.x: fhirUser is a Patient, Practitioner, PractitionerRole, RelatedPerson or Person.
FHIR_USER_TYPES = frozenset({"Patient", "Practitioner", "PractitionerRole", "RelatedPerson", "Person"})


def _bad(claim: str) -> AuthenticationError:
    return AuthenticationError(f"token claim {claim!r} has an invalid value", reason="token.invalid_claim")


def normalize_fhir_user(value: str) -> str | None:
    """`https://host/fhir/Practitioner/123[/_history/2]` or `Practitioner/123` -> `Practitioner/123`."""
    text = value.strip()
    parts = [p for p in text.split("/") if p]
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2:
        return None
    kind, ident = parts[-2], parts[-1]
    if kind not in FHIR_USER_TYPES or not _ID.fullmatch(ident):
        return None
    if len(parts) > 2 and "://" not in text:
        return None  # a relative path with extra segments is not a reference we understand
    return f"{kind}/{ident}"


def _optional_str(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _bad(name)
    return value


def _scope_text(claims: Mapping[str, Any]) -> str:
    scope = claims.get("scope")
    if scope is not None:
        if not isinstance(scope, str):
            raise _bad("scope")
        return scope
    scp = claims.get("scp")
    if scp is None:
        return ""
    if isinstance(scp, str):
        return scp
    if isinstance(scp, list) and all(isinstance(s, str) and s and not any(c.isspace() for c in s) for s in scp):
        return " ".join(scp)
    raise _bad("scp")


def _patient(claims: Mapping[str, Any]) -> str | None:
    value = _optional_str(claims, "patient")
    if value is None:
        return None
    ident = value.removeprefix("Patient/")
    if not _ID.fullmatch(ident):
        raise _bad("patient")
    return ident


def _purpose_of_use(claims: Mapping[str, Any]) -> tuple[str, ...]:
    value = claims.get("purpose_of_use")
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise _bad("purpose_of_use")


ROLE_CLAIM = "fhirgate_role"
_ROLE = re.compile(r"[a-z][a-z0-9_]{0,63}")


def _role(claims: Mapping[str, Any], claim: str) -> str | None:
    value = claims.get(claim)
    if value is None:
        return None
    if not isinstance(value, str) or not _ROLE.fullmatch(value):
        raise _bad(claim)
    return value


def principal_from_claims(claims: Mapping[str, Any], *, role_claim: str = ROLE_CLAIM) -> Principal:
    """Build a Principal from claims whose signature, issuer, audience and times are already verified.

    `role_claim` names the claim holding the governance role (the policy file's `role_claim`).
    """
    sub = claims.get("sub")
    iss = claims.get("iss")
    if not isinstance(sub, str) or not sub:
        raise _bad("sub")
    if not isinstance(iss, str) or not iss:
        raise _bad("iss")
    fhir_user_raw = _optional_str(claims, "fhirUser")
    fhir_user = None
    if fhir_user_raw is not None:
        fhir_user = normalize_fhir_user(fhir_user_raw)
        if fhir_user is None:
            raise _bad("fhirUser")
    client_id = _optional_str(claims, "client_id") or _optional_str(claims, "azp")
    exp = claims.get("exp")
    extra: dict[str, str] = {}
    encounter = _optional_str(claims, "encounter")
    if encounter is not None:
        extra["encounter"] = encounter.removeprefix("Encounter/")
    return Principal(
        sub=sub,
        issuer=iss,
        scopes=ScopeSet.parse(_scope_text(claims)),
        client_id=client_id,
        fhir_user=fhir_user,
        patient=_patient(claims),
        purpose_of_use=_purpose_of_use(claims),
        role=_role(claims, role_claim),
        token_id=_optional_str(claims, "jti"),
        expires_at=float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None,
        extra=extra,
    )
