"""Keyed, per-principal pseudonymous ids, so de-identified output can be joined but never reversed or linked.

A pseudonym is `p-` followed by 20 lowercase base32 characters (100 bits) of
HMAC-SHA256(principal subkey, "<ResourceType>\\x00<real id>"), where the principal subkey is
HMAC-SHA256(server key, "fhirgate/pseudonym/v1\\x00<principal key>"). Consequences:

- stable: the same (key, principal, type, id) always gives the same pseudonym, across calls and restarts;
- unlinkable: two principals get unrelated pseudonyms for the same record (different subkeys);
- not reversible: HMAC is one-way and the key never leaves the server; the model only ever sees the output;
- a valid FHIR id (R4 §2.24.0.1 `[A-Za-z0-9\\-\\.]{1,64}`), 22 characters long.

Safe Harbor (45 CFR 164.514(c)) allows a re-identification code only when it is not derived from the
individual's information in a way that can be translated back; a keyed HMAC whose key is never disclosed
meets that, and the code is never shown alongside the real id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from fhirgate.errors import InvalidInput

PSEUDONYM_PREFIX = "p-"
PSEUDONYM_CHARS = 20  # base32 characters = 100 bits of the HMAC
MIN_KEY_BYTES = 16
DATE_SHIFT_MAX_DAYS = 182
CONTAINED = "#contained"  # namespace of contained-resource ids (local references "#id")

_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}")
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_RELATIVE = re.compile(r"([A-Z][A-Za-z]{0,63})/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?")


class Pseudonymizer:
    """Maps real resource ids and relative references to stable, keyed pseudonyms for one principal."""

    __slots__ = ("_subkey",)

    def __init__(self, key: bytes, principal_key: str) -> None:
        if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES:
            raise InvalidInput("key", "must be a secret of bytes", f"at least {MIN_KEY_BYTES} random bytes")
        if not isinstance(principal_key, str) or not principal_key:
            raise InvalidInput("principal_key", "must be a non-empty string", "the principal's subject_key")
        label = b"fhirgate/pseudonym/v1\x00" + principal_key.encode("utf-8", "surrogatepass")
        self._subkey = hmac.new(key, label, hashlib.sha256).digest()

    def _digest(self, namespace: str, value: str) -> bytes:
        message = f"{namespace}\x00{value}".encode("utf-8", "surrogatepass")
        return hmac.new(self._subkey, message, hashlib.sha256).digest()

    def _token(self, namespace: str, value: str) -> str:
        raw = base64.b32encode(self._digest(namespace, value)).decode("ascii").lower()
        return PSEUDONYM_PREFIX + raw[:PSEUDONYM_CHARS]

    def pid(self, resource_type: str, real_id: str) -> str:
        """The pseudonym of `resource_type/real_id` for this principal: `p-` + 20 lowercase base32 chars."""
        if not isinstance(resource_type, str) or not (_TYPE.fullmatch(resource_type) or resource_type == CONTAINED):
            raise InvalidInput("resource_type", "must be a FHIR resource type name", "e.g. Patient")
        if not isinstance(real_id, str) or not real_id or len(real_id) > 256:
            raise InvalidInput("real_id", "must be a non-empty string", "a FHIR id, at most 256 characters")
        return self._token(resource_type, real_id)

    def ref(self, reference: str) -> str | None:
        """The pseudonymized form of a reference, or None when it must be dropped.

        `Type/id` and `Type/id/_history/v` become `Type/<pid>` (the version is dropped: version ids can be
        sequential and linkable); `#id` (a contained resource) becomes `#<pid>`. Absolute URLs, `urn:uuid:`/
        `urn:oid:` references and anything else return None: they name servers (Safe Harbor (N)) or carry
        identifiers we cannot map consistently. Raises InvalidInput only when `reference` is not a string.
        """
        if not isinstance(reference, str):
            raise InvalidInput("reference", "must be a string", "Type/id or #id")
        if reference.startswith("#") and _ID.fullmatch(reference[1:]):
            return "#" + self._token(CONTAINED, reference[1:])
        match = _RELATIVE.fullmatch(reference)
        if match is None:
            return None
        return f"{match.group(1)}/{self._token(match.group(1), match.group(2))}"

    def date_shift_days(self, patient_real_id: str) -> int:
        """A stable per-patient day offset in [-182, 182], never 0, for consistent date shifting.

        Not used by SafeHarbor (date shifting is not Safe Harbor: 164.514(b)(2)(i)(C) wants year only); it is
        here for a future Expert Determination mode that shifts every date of one patient by the same amount.
        """
        if not isinstance(patient_real_id, str) or not patient_real_id:
            raise InvalidInput("patient_real_id", "must be a non-empty string", "a Patient id")
        number = int.from_bytes(self._digest("#date-shift", patient_real_id)[:8], "big")
        magnitude = 1 + number % DATE_SHIFT_MAX_DAYS
        return magnitude if (number >> 32) & 1 else -magnitude
