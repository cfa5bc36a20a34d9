"""Security labels on resources (FHIR R4 §8.1.2 `meta.security`): which are known, which are sensitive, who sees them.

Labels are reduced to their bare codes (`R`, `ETH`, `42CFRPart2`): the code systems used here do not share
codes, and codes are not PHI, so reasons and tallies may name them. Pure logic, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from fhirgate.core.policy.decision import Decision
from fhirgate.errors import InvalidInput

# HL7 v3 Confidentiality (THO `v3-Confidentiality`, FHIR R4 §8.1.2.1), ordered from least to most restricted.
CONFIDENTIALITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
CONFIDENTIALITY_CODES: tuple[str, ...] = ("U", "L", "M", "N", "R", "V")
CONFIDENTIALITY_RANK: Mapping[str, int] = {code: rank for rank, code in enumerate(CONFIDENTIALITY_CODES)}

# HL7 v3 ActCode (THO `v3-ActCode`): sensitivity, privacy-law, refrain/obligation and consent-directive codes.
ACTCODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"

# Older URIs for the same systems (FHIR DSTU2/STU3 `http://hl7.org/fhir/v3/...`, and the HL7 OIDs) are aliases.
SYSTEM_ALIASES: Mapping[str, str] = {
    CONFIDENTIALITY_SYSTEM: CONFIDENTIALITY_SYSTEM,
    "http://hl7.org/fhir/v3/Confidentiality": CONFIDENTIALITY_SYSTEM,
    "urn:oid:2.16.840.1.113883.5.25": CONFIDENTIALITY_SYSTEM,
    ACTCODE_SYSTEM: ACTCODE_SYSTEM,
    "http://hl7.org/fhir/v3/ActCode": ACTCODE_SYSTEM,
    "urn:oid:2.16.840.1.113883.5.4": ACTCODE_SYSTEM,
}

# ActInformationSensitivityPolicy (v3-ActCode `_InformationSensitivityPolicy`): kinds of information that law
# or policy protect beyond the normal. The first eight are those the issue names (REFERENCE §5); the rest are
# siblings in the same value set that a practice may meet: MST military sexual trauma, SPI specially protected
# information, MH mental health, COGN cognitive disability, DVD developmental disability, EMOTDIS emotional
# disturbance, PSYTHPN psychotherapy note, SUD/ETHUD/OPIOIDUD substance use disorder variants, SICKLE sickle cell,
# TBOO taboo.
SENSITIVITY_CODES: frozenset[str] = frozenset(
    {"ETH", "HIV", "PSY", "GDIS", "STD", "SDV", "SEX", "BH"}
    | {"MST", "SPI", "MH", "COGN", "DVD", "EMOTDIS", "PSYTHPN", "SUD", "ETHUD", "OPIOIDUD", "SICKLE", "TBOO"}
)

# ActPrivacyLaw (42 CFR Part 2, Common Rule, HIPAA notices, 38 USC 7332) and RefrainPolicy codes such as
# NORDSCLCD ("no redisclosure without consent directive") that travel on data as handling caveats.
POLICY_CODES: frozenset[str] = frozenset(
    {"42CFRPart2", "CommonRule", "HIPAANOPP", "HIPAAPsyNotes", "HIPAASelfPay", "Title38Section7332"}
    | {"NORDSCLCD", "NORDSCLCDS", "NORDSCLW", "NODSCLCD", "NODSCLCDS", "NOREUSE", "NOAUTH", "NOCOLLECT"}
    | {"NOINTEGRATE", "NOLIST", "NOPERSISTP", "ORCON"}
)

# ActConsentDirective codes used as Consent.policyRule (v3-ActCode): opt-in/out, with restrictions/exceptions.
CONSENT_DIRECTIVE_CODES: frozenset[str] = frozenset({"OPTIN", "OPTINR", "OPTOUT", "OPTOUTE"})

# Codes recognised when a meta.security Coding has no system (see `labels_of`).
KNOWN_CODES: frozenset[str] = frozenset(CONFIDENTIALITY_CODES) | SENSITIVITY_CODES | POLICY_CODES

# The default sensitive set (issue 5 item 3, REFERENCE §5): withheld unless role and purpose allow.
SENSITIVE_DEFAULT: frozenset[str] = frozenset(
    {"R", "V", "ETH", "PSY", "HIV", "STD", "SDV", "SEX", "BH", "GDIS", "42CFRPart2"}
)

_CATEGORY = re.compile(r"[a-z][a-z0-9-]{0,39}")
_MAX_SECURITY = 1000  # more meta.security entries than this is not a label set; the rest are not read


def canonical_system(system: object) -> str | None:
    """The canonical URI of a known label code system (aliases folded), or None when unknown or not a string."""
    if not isinstance(system, str):
        return None
    return SYSTEM_ALIASES.get(system.strip())


def coding_label(coding: object) -> str | None:
    """The label code a Coding carries when it is from a known system (or system-less with a known code), else None.

    Confidentiality codes outside U L M N R V are not labels. A Coding without `system` counts only when its
    code is one of KNOWN_CODES: FHIR makes Coding.system optional, and a careless feed must not be able to
    strip a label by dropping the system.
    """
    if not isinstance(coding, Mapping):
        return None
    code = coding.get("code")
    if not isinstance(code, str) or not code or code != code.strip():
        return None
    raw_system = coding.get("system")
    if raw_system is None:
        return code if code in KNOWN_CODES else None
    system = canonical_system(raw_system)
    if system == CONFIDENTIALITY_SYSTEM:
        return code if code in CONFIDENTIALITY_RANK else None
    if system == ACTCODE_SYSTEM:
        return code
    return None


def labels_of(resource: Mapping[str, Any]) -> frozenset[str]:
    """The security label codes in a resource's meta.security, from known systems only; never raises.

    Codings from unknown systems (local tags, v3-ActReason purpose-of-use tags, v3-ObservationValue) are
    ignored: this module cannot judge them. Any malformed shape (meta not an object, security not a list,
    a coding not an object) yields the labels that could be read, possibly none.
    """
    try:
        meta = resource.get("meta") if isinstance(resource, Mapping) else None
        if not isinstance(meta, Mapping):
            return frozenset()
        security = meta.get("security")
        if not isinstance(security, list | tuple):
            return frozenset()
        found = (coding_label(c) for c in security[:_MAX_SECURITY])
        return frozenset(code for code in found if code is not None)
    except Exception:  # a hostile Mapping implementation; labels are advisory input, never fatal
        return frozenset()


def sensitive_labels(labels: Iterable[str], sensitive: frozenset[str]) -> frozenset[str]:
    """Which of a resource's labels are sensitive under a policy's sensitive set."""
    return frozenset(labels) & sensitive


def label_decision(labels: frozenset[str], sensitive: frozenset[str], visible: frozenset[str]) -> Decision:
    """Allowed iff every sensitive label of the resource is in `visible` (the role/purpose grant).

    Reasons: `label.none` (no sensitive label), `label.visible` (all sensitive labels granted),
    `label.withheld` (detail names the withheld codes, sorted). Matching is exact: granting `V` does not
    imply `R`; a policy lists every code it grants.
    """
    hits = sensitive_labels(labels, sensitive)
    if not hits:
        return Decision.allow("label.none", "no sensitive security label")
    withheld = hits - visible
    if withheld:
        return Decision.deny("label.withheld", f"withheld sensitive labels: {', '.join(sorted(withheld))}")
    return Decision.allow("label.visible", f"sensitive labels granted: {', '.join(sorted(hits))}")


# Reason prefix -> withheld category, for `WithheldTally.add_decision`.
REASON_CATEGORIES: Mapping[str, str] = {
    "label": "sensitivity",
    "consent": "consent",
    "careteam": "care-team",
    "care-team": "care-team",
    "projection": "minimum-necessary",
    "purpose": "purpose",
    "compartment": "scope",
    "scope": "scope",
}


def category_of(reason: str) -> str:
    """The withheld category for a decision reason code (its first dotted part; unknown prefixes -> `policy`)."""
    return REASON_CATEGORIES.get(reason.split(".", 1)[0], "policy")


class WithheldTally:
    """Counts of withheld items by category, rendered as "3 items withheld: 2 sensitivity, 1 consent".

    Categories are short lowercase codes (never PHI). Mergeable: `a.merge(b)` adds b into a, `a + b` makes a
    new tally. Rendering orders categories by count (descending), then name, so output is deterministic.
    """

    __slots__ = ("_counts",)

    def __init__(self, counts: Mapping[str, int] | None = None) -> None:
        self._counts: dict[str, int] = {}
        for category, n in (counts or {}).items():
            self.add(category, n)

    def add(self, category: str, n: int = 1) -> None:
        """Count `n` more withheld items of `category` (a lowercase code such as `sensitivity`)."""
        if not isinstance(category, str) or not _CATEGORY.fullmatch(category):
            raise InvalidInput("category", "must be a short lowercase code", "e.g. sensitivity, consent, care-team")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise InvalidInput("n", "must be a non-negative whole number")
        if n:
            self._counts[category] = self._counts.get(category, 0) + n

    def add_decision(self, decision: Decision) -> None:
        """Count one item for a refusal, under the category its reason maps to; allowed decisions count nothing."""
        if not decision.allowed:
            self.add(category_of(decision.reason))

    def merge(self, other: WithheldTally) -> WithheldTally:
        """Add another tally's counts into this one; returns self for chaining."""
        for category, n in other._counts.items():
            self._counts[category] = self._counts.get(category, 0) + n
        return self

    def __add__(self, other: WithheldTally) -> WithheldTally:
        return WithheldTally(self._counts).merge(other)

    @property
    def total(self) -> int:
        """All withheld items."""
        return sum(self._counts.values())

    def counts(self) -> dict[str, int]:
        """Category -> count, in rendering order."""
        return dict(sorted(self._counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def sentence(self) -> str:
        """E.g. "3 items withheld: 2 sensitivity, 1 consent"; the empty string when nothing was withheld."""
        total = self.total
        if not total:
            return ""
        parts = ", ".join(f"{n} {category}" for category, n in self.counts().items())
        return f"{total} item{'s' if total != 1 else ''} withheld: {parts}"

    def __bool__(self) -> bool:
        return self.total > 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WithheldTally) and self._counts == other._counts

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"WithheldTally({self.counts()!r})"
