"""A policy decision carries its reason, so refusals can be explained, audited and tested."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one policy check.

    `reason` is a stable dotted code (for example `scope.granted`, `scope.missing`,
    `compartment.outside`); `detail` is a sentence for people, naming types and ids, never PHI;
    `scope` is the granted scope that allowed the access, or for a refusal the scope that would.
    """

    allowed: bool
    reason: str
    detail: str = ""
    scope: str | None = None

    def __bool__(self) -> bool:
        return self.allowed

    @classmethod
    def allow(cls, reason: str, detail: str = "", scope: str | None = None) -> Decision:
        return cls(True, reason, detail, scope)

    @classmethod
    def deny(cls, reason: str, detail: str = "", scope: str | None = None) -> Decision:
        return cls(False, reason, detail, scope)
