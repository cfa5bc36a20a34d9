"""Who is asking: the verified identity and grants taken from a token or a local profile."""

from __future__ import annotations

from dataclasses import dataclass, field

from fhirgate.core.policy.scopes import ScopeSet


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    `patient` is the SMART launch context (token claim `patient`); `fhir_user` the `fhirUser`
    claim as a relative reference (`Practitioner/123`); `role` the governance role claimed.
    `subject_key` identifies the principal for binding cursors and rate limits.
    """

    sub: str
    issuer: str
    scopes: ScopeSet
    client_id: str | None = None
    fhir_user: str | None = None
    patient: str | None = None
    purpose_of_use: tuple[str, ...] = ()
    # The role the token or profile names (the policy's role claim); the policy decides what it may be.
    role: str | None = None
    token_id: str | None = None
    expires_at: float | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def subject_key(self) -> str:
        """Stable identity for binding cursors and limits: issuer plus subject."""
        return f"{self.issuer}#{self.sub}"
