"""The stdio edge: one local client over stdin/stdout, acting as an explicitly configured principal.

The principal comes from a JWT (`--token` / $FHIRGATE_TOKEN) verified exactly like an HTTP bearer
token (issuer, signature, expiry, audience = this server's resource URL), or from a named local
profile `[profiles.NAME]` in fhirgate.toml (scope, fhir_user, patient). There is no default: with
neither, the server refuses to start, so stdio is never silently unrestricted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fhirgate.auth.principal_builder import normalize_fhir_user
from fhirgate.auth.tokens import TokenVerifier
from fhirgate.core.policy.principal import Principal
from fhirgate.core.policy.scopes import ScopeSet, parse_scope
from fhirgate.errors import AuthenticationError, ConfigError, InvalidInput

PROFILE_ISSUER = "urn:fhirgate:local-profile"


def principal_from_token(token: str, verifier: TokenVerifier) -> Principal:
    """Verify a JWT like a bearer token; ConfigError (with the reason code) when it is refused."""
    try:
        return verifier.verify(token.strip())
    except AuthenticationError as exc:
        raise ConfigError(f"stdio token refused ({exc.reason}): {exc.message}") from None


def principal_from_profile(name: str, profiles: Mapping[str, Any]) -> Principal:
    """A Principal from fhirgate.toml `[profiles.NAME]`: `scope` (required), `fhir_user`, `patient`."""
    entry = profiles.get(name) if isinstance(profiles, Mapping) else None
    if not isinstance(entry, Mapping):
        known = ", ".join(sorted(profiles)) if isinstance(profiles, Mapping) and profiles else "none defined"
        raise ConfigError(f"no profile [profiles.{name}] in fhirgate.toml (profiles: {known})")
    scope = entry.get("scope")
    if not isinstance(scope, str) or not scope.split():
        raise ConfigError(f"[profiles.{name}] needs a 'scope' string, e.g. \"user/*.rs\"")
    try:
        for item in scope.split():
            parse_scope(item)
    except InvalidInput as exc:
        raise ConfigError(f"[profiles.{name}].scope: {exc.message}") from None
    fhir_user = entry.get("fhir_user")
    if fhir_user is not None:
        fhir_user = normalize_fhir_user(fhir_user) if isinstance(fhir_user, str) else None
        if fhir_user is None:
            raise ConfigError(f"[profiles.{name}].fhir_user must be a reference such as Practitioner/123")
    patient = entry.get("patient")
    if patient is not None and (not isinstance(patient, str) or not patient.removeprefix("Patient/")):
        raise ConfigError(f"[profiles.{name}].patient must be a Patient id")
    role = entry.get("role")
    if role is not None and (not isinstance(role, str) or not role):
        raise ConfigError(f"[profiles.{name}].role must be the name of a role in the policy file")
    scopes = ScopeSet.parse(scope)
    if not scopes.resources:
        raise ConfigError(f"[profiles.{name}].scope grants no SMART resource scope")
    return Principal(
        sub=f"profile:{name}",
        issuer=PROFILE_ISSUER,
        scopes=scopes,
        client_id="fhirgate-stdio",
        fhir_user=fhir_user,
        patient=patient.removeprefix("Patient/") if isinstance(patient, str) else None,
        role=role,
    )


def stdio_principal(
    *, token: str | None, profile: str | None, verifier: TokenVerifier | None, profiles: Mapping[str, Any]
) -> Principal:
    """The principal for a stdio session; ConfigError when none is configured or both are."""
    if token and profile:
        raise ConfigError("give either --token (or FHIRGATE_TOKEN) or --profile for stdio, not both")
    if token:
        if verifier is None:
            raise ConfigError("no trusted token issuer configured: set [auth] issuers or trust_dev_issuer")
        principal = principal_from_token(token, verifier)
        if not principal.scopes.resources:
            raise ConfigError("stdio token grants no SMART resource scope (insufficient_scope)")
        return principal
    if profile:
        return principal_from_profile(profile, profiles)
    raise ConfigError(
        "stdio needs an explicit principal: pass --token JWT (or set FHIRGATE_TOKEN), or --profile NAME "
        "naming a [profiles.NAME] table (scope, fhir_user, patient) in fhirgate.toml; refusing to start "
        "without one"
    )
