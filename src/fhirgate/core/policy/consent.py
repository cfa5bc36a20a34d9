"""FHIR R4 privacy Consents (http://hl7.org/fhir/R4/consent.html) compiled into pure access decisions with reasons.

Semantics (R4 element names in backticks; "access" is one `ConsentQuery`):
- Only `Consent.status` = active counts; only `Consent.scope` patient-privacy (or scope absent) governs
  information access. treatment/research/adr consents are about care or study participation, not disclosure,
  and are skipped (listed in `ConsentSet.ignored`).
- `Consent.policyRule` is the base policy the provisions are exceptions to (R4: Consent.provision "An exception
  to the base policy of this consent"): v3-ActCode OPTOUT/OPTOUTE = deny, OPTIN/OPTINR = permit,
  42CFRPart2 = resources labelled 42CFRPart2 are denied unless a provision permits (42 CFR 2.31/2.33: Part 2
  records are disclosed only under a consent naming recipient and purpose); any other rule = no base opinion.
- The root `provision` is in force during its `period`; outside it the whole Consent does not apply. When the
  root matches the access, its `type` (or the base, when untyped) is the outcome unless a nested `provision`
  (R4: "Nested Exception Rules") matches: the deepest matching provision decides, and among matching siblings
  deny wins. When the root does not match, the base policy decides.
- Conditions of one provision are ANDed; the values within one condition are ORed (R4 `class` comment:
  "Multiple types are or'ed together"). `purpose` honours the v3-ActReason hierarchy (a rule on TREAT covers
  ETREAT). `securityLabel` confidentiality codes follow the high-water mark (R4 securityLabel comment): a permit
  on R covers R and lower; a deny on R is read conservatively as R and higher, and a resource without a
  confidentiality label counts as N for denies only.
- A permit nested under a deny that matched by sensitivity label must itself name every sensitivity label the
  deny caught (a permit for ETH does not release a record that is also HIV under a deny of ETH and HIV).
- Conditions the query cannot settle (a Group actor, `code` without `query.codes`, `data` needing the resource
  graph, a coding from an unknown system) are decided restrictively: a deny treats them as matching, a permit
  as not matching. Consent never grants more than role, scope and label policy allow: AND it with them.
- Several active Consents for one patient: any applicable deny wins, whatever the dateTime order. A newer
  opt-in does not cancel an older opt-out still marked active: revocation must set status or period.
- A full opt-out (`ConsentSet.opted_out`, reason `consent.optout`) is a Consent in force whose base is deny
  (OPTOUT) or whose root is an unconditional deny, with no permit provision anywhere: it denies every access.
- Reasons: `consent.optout`, `consent.unreadable`, `consent.deny.{label,class,code,data,period,actor,purpose,
  action,all}` (named after the deciding provision's narrowest condition; `period` is `dataPeriod`),
  `consent.permit`, `consent.none`, and for `opted_out` also `consent.rules`. Details name the Consent id, the
  provision path and the matched codes, types or actor references; never PHI.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from fhirgate.core.fhir.dates import parse_date_range
from fhirgate.core.policy.decision import Decision
from fhirgate.core.policy.labels import (
    ACTCODE_SYSTEM,
    CONFIDENTIALITY_RANK,
    SENSITIVITY_CODES,
    canonical_system,
    coding_label,
)
from fhirgate.errors import InvalidInput

Effect = Literal["permit", "deny"]
Match = bool | None  # None: the query cannot settle the condition (decided restrictively)

ACTIONS: frozenset[str] = frozenset({"collect", "access", "use", "disclose", "correct"})  # R4 consentaction
READ_ACTIONS: frozenset[str] = frozenset({"access", "use", "disclose"})
_STATUSES = frozenset({"draft", "proposed", "active", "rejected", "inactive", "entered-in-error"})
_SCOPE_SYSTEMS = frozenset({"http://terminology.hl7.org/CodeSystem/consentscope", "http://hl7.org/fhir/consentscope"})
_ACTION_SYSTEMS = frozenset(
    {"http://terminology.hl7.org/CodeSystem/consentaction", "http://hl7.org/fhir/consentaction"}
)
_REASON_SYSTEMS = frozenset(
    {
        "http://terminology.hl7.org/CodeSystem/v3-ActReason",
        "http://hl7.org/fhir/v3/ActReason",
        "urn:oid:2.16.840.1.113883.5.8",
        # v3-ActCode is accepted too: purpose codes are often (wrongly) coded with it, the demo practice included,
        # and the codes do not collide with ActReason's purpose-of-use codes.
        ACTCODE_SYSTEM,
        "http://hl7.org/fhir/v3/ActCode",
    }
)
_CLASS_SYSTEM = "http://hl7.org/fhir/resource-types"
_DATA_MEANINGS = frozenset({"instance", "related", "dependents", "authoredby"})
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}")
_CODE = re.compile(r"[A-Za-z0-9_\-]{1,40}")
_MAX_DEPTH, _MAX_NODES = 16, 1000
_N_RANK = CONFIDENTIALITY_RANK["N"]

# v3-ActReason PurposeOfUse specialisations (child -> parent), the common part of the hierarchy.
PURPOSE_PARENTS: Mapping[str, str] = {
    "ETREAT": "TREAT", "BTG": "ETREAT", "POPHLTH": "TREAT", "COC": "TREAT", "CLINTRL": "TREAT",
    "CLMATTCH": "HPAYMT", "COVAUTH": "HPAYMT", "COVERAGE": "HPAYMT", "ELIGDTRM": "COVERAGE", "ELIGVER": "COVERAGE",
    "ENROLLM": "COVERAGE", "REMITADV": "HPAYMT", "BIORCH": "HRESCH", "CLINTRCH": "HRESCH", "DSRCH": "HRESCH",
    "POARCH": "HRESCH", "TRANSRCH": "HRESCH", "PRECLINTRCH": "HRESCH", "CAREMGT": "HOPERAT", "HQUALIMP": "HOPERAT",
    "HSYSADMIN": "HOPERAT", "PATADMIN": "HOPERAT", "RECORDMGT": "HOPERAT", "TRAIN": "HOPERAT", "HTEST": "HOPERAT",
    "DISASTER": "PUBHLTH", "THREAT": "PUBHLTH", "FAMRQT": "PATRQT", "PWATRNY": "PATRQT", "SUPNWK": "PATRQT",
}  # fmt: skip


def purpose_lineage(code: str) -> frozenset[str]:
    """A purpose code and every broader purpose it specialises (ETREAT -> {ETREAT, TREAT})."""
    out = {code}
    while (code := PURPOSE_PARENTS.get(code, "")) and code not in out:
        out.add(code)
    return frozenset(out)


def parse_reference(value: object) -> str | None:
    """`Type/id` from a relative or absolute literal reference (version suffix dropped); None when unreadable."""
    if not isinstance(value, str):
        return None
    parts = value.strip().split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2 or not _TYPE.fullmatch(parts[-2]) or not _ID.fullmatch(parts[-1]):
        return None
    return f"{parts[-2]}/{parts[-1]}"


@dataclass(frozen=True, slots=True)
class Period:
    """An inclusive day range; an open end is unbounded (R4 Period at day granularity, local dates as written)."""

    start: date | None
    end: date | None

    def contains(self, day: date) -> bool:
        return (self.start is None or self.start <= day) and (self.end is None or day <= self.end)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsentQuery:
    """One access to judge: which resource, carrying which labels, by whom, why and when.

    `labels` are `labels_of(resource)`; `resource_date` its clinically relevant date (for `dataPeriod`).
    `actor_refs` are the acting principal's references (fhirUser, its Organization, PractitionerRole); empty
    means unknown, which a deny with `actor` treats as matching (actor.role is not compared). `purpose` is one
    v3-ActReason code; `now` the day of the access (provision.period). `codes` ("system|code" of the
    resource's codes) and `references` (its outgoing `Type/id` references) are optional; when None,
    `provision.code` and graph-dependent `provision.data` cannot be settled. Bad arguments raise InvalidInput.
    """

    resource_type: str
    labels: frozenset[str] = frozenset()
    resource_date: date | None = None
    resource_ref: str | None = None
    actor_refs: frozenset[str] = frozenset()
    purpose: str
    action: str = "access"
    now: date
    codes: frozenset[str] | None = None
    references: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.resource_type, str) or not _TYPE.fullmatch(self.resource_type):
            raise InvalidInput("resource_type", "must be a FHIR resource type name", "e.g. Condition")
        if not isinstance(self.purpose, str) or not _CODE.fullmatch(self.purpose):
            raise InvalidInput("purpose", "must be a v3-ActReason code", "e.g. TREAT, HPAYMT, HRESCH")
        if self.action not in ACTIONS:
            raise InvalidInput("action", "unknown consent action", ", ".join(sorted(ACTIONS)))
        for name in ("now", "resource_date"):
            value = getattr(self, name)
            if isinstance(value, datetime):
                object.__setattr__(self, name, value.date())
            elif not isinstance(value, date) and not (value is None and name == "resource_date"):
                raise InvalidInput(name, "must be a datetime.date")
        for name in ("labels", "actor_refs", "codes", "references"):
            value = getattr(self, name)
            if value is None and name in ("codes", "references"):
                continue
            if isinstance(value, str) or not isinstance(value, Iterable) or not all(isinstance(v, str) for v in value):
                raise InvalidInput(name, "must be a set of strings")
            object.__setattr__(self, name, frozenset(value))
        actors = frozenset(parse_reference(r) for r in self.actor_refs)
        if None in actors:
            raise InvalidInput("actor_refs", "must be references", "e.g. Practitioner/pr-1, Organization/org-1")
        object.__setattr__(self, "actor_refs", actors)
        if self.resource_ref is not None:
            ref = parse_reference(self.resource_ref)
            if ref is None:
                raise InvalidInput("resource_ref", "must be a reference", "e.g. Condition/c-1")
            object.__setattr__(self, "resource_ref", ref)
        if self.references is not None:
            object.__setattr__(self, "references", frozenset(r for r in map(parse_reference, self.references) if r))


class _Malformed(Exception):
    """Internal: a Consent element has a shape R4 does not allow."""


def _list(node: Mapping[str, Any], key: str) -> list[Any]:
    value = node.get(key)
    if value is None:
        return []
    if isinstance(value, Mapping):  # a lone object where R4 JSON has an array: read it as one item
        return [value]
    if not isinstance(value, list):
        raise _Malformed(key)
    return value


def _codings(items: list[Any], key: str) -> list[Mapping[str, Any]]:
    """The Codings of a list that holds Codings or CodeableConcepts."""
    out: list[Mapping[str, Any]] = []
    for item in items:
        if not isinstance(item, Mapping):
            raise _Malformed(key)
        out += [c for c in _list(item, "coding") if isinstance(c, Mapping)] if "coding" in item else [item]
    return out


def _code_in(coding: Mapping[str, Any], systems: frozenset[str], *, bare: bool = True) -> str | None:
    """The coding's code when its system is one of `systems` (or absent and `bare`), else None."""
    code, system = coding.get("code"), coding.get("system")
    if not isinstance(code, str) or not _CODE.fullmatch(code):
        return None
    return code if (system is None and bare) or system in systems else None


def _days(value: object) -> tuple[date, date]:
    """The first and last calendar day a FHIR date/dateTime covers, as written (its zone is not applied)."""
    if not isinstance(value, str):
        raise ValueError("not a string")
    parse_date_range(value)  # validates the whole value (FHIR R4 §2.24.0.1 dateTime)
    parts = value.strip()[:10].split("-")
    y, m, d = parts[0], (parts[1] if len(parts) > 1 else None), (parts[2] if len(parts) > 2 else None)
    lo = date(int(y), int(m or 1), int(d or 1))
    if m is None:
        return lo, date(lo.year, 12, 31)
    if d is None:
        return lo, date(lo.year, lo.month, calendar.monthrange(lo.year, lo.month)[1])
    return lo, lo


def _period(value: object, key: str) -> Period | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _Malformed(key)
    try:
        start, end = value.get("start"), value.get("end")
        return Period(_days(start)[0] if start is not None else None, _days(end)[1] if end is not None else None)
    except (ValueError, TypeError, OverflowError):
        raise _Malformed(key) from None


@dataclass(frozen=True, slots=True)
class Provision:
    """One compiled `Consent.provision` (or nested one); None in a condition tuple = a value we cannot read."""

    path: str
    type: Effect | None
    period: Period | None
    actors: tuple[str | None, ...]
    actions: tuple[str | None, ...]
    labels: tuple[str | None, ...]
    purposes: tuple[str | None, ...]
    classes: tuple[str | None, ...]
    codes: tuple[str | None, ...]
    data_period: Period | None
    data: tuple[tuple[str, str | None], ...]
    children: tuple[Provision, ...]

    @property
    def narrowing(self) -> tuple[str, ...]:
        """The data-narrowing conditions present, most telling first (names the `consent.deny.*` reasons)."""
        have = {
            "label": self.labels, "class": self.classes, "code": self.codes, "data": self.data,
            "period": self.data_period, "actor": self.actors, "purpose": self.purposes, "action": self.actions,
        }  # fmt: skip
        return tuple(k for k, v in have.items() if v)

    def walk(self) -> Iterable[Provision]:
        yield self
        for child in self.children:
            yield from child.walk()


def _provision(node: object, path: str, depth: int, budget: list[int]) -> Provision:
    """Compile one provision element (R4 Consent.provision and its nested provision tree)."""
    budget[0] -= 1
    if not isinstance(node, Mapping) or depth > _MAX_DEPTH or budget[0] < 0:
        raise _Malformed(path)
    kind = node.get("type")
    if kind not in (None, "permit", "deny"):
        raise _Malformed(f"{path}.type")
    actors: list[str | None] = []
    for actor in _list(node, "actor"):  # R4 actor: role (ignored: we match who) + reference
        ref = actor.get("reference") if isinstance(actor, Mapping) else None
        target = parse_reference(ref.get("reference")) if isinstance(ref, Mapping) else None
        actors.append(None if target is None or target.startswith("Group/") else target)
    data: list[tuple[str, str | None]] = []
    for item in _list(node, "data"):  # R4 data: meaning (instance|related|dependents|authoredby) + reference
        meaning = item.get("meaning") if isinstance(item, Mapping) else None
        ref = item.get("reference") if isinstance(item, Mapping) else None
        if meaning not in _DATA_MEANINGS or not isinstance(ref, Mapping):
            raise _Malformed(f"{path}.data")
        data.append((str(meaning), parse_reference(ref.get("reference"))))
    children = _list(node, "provision")
    return Provision(
        path=path,
        type=kind,
        period=_period(node.get("period"), f"{path}.period"),
        actors=tuple(actors),
        actions=tuple(_code_in(c, _ACTION_SYSTEMS) for c in _codings(_list(node, "action"), "action")),
        labels=tuple(coding_label(c) for c in _codings(_list(node, "securityLabel"), "securityLabel")),
        purposes=tuple(_code_in(c, _REASON_SYSTEMS) for c in _codings(_list(node, "purpose"), "purpose")),
        classes=tuple(_class(c) for c in _codings(_list(node, "class"), "class")),
        codes=tuple(_system_code(c) for c in _codings(_list(node, "code"), "code")),
        data_period=_period(node.get("dataPeriod"), f"{path}.dataPeriod"),
        data=tuple(data),
        children=tuple(_provision(c, f"{path}.provision[{i}]", depth + 1, budget) for i, c in enumerate(children)),
    )


def _class(coding: Mapping[str, Any]) -> str | None:
    code = _code_in(coding, frozenset({_CLASS_SYSTEM}))
    return code if code is not None and _TYPE.fullmatch(code) else None


def _system_code(coding: Mapping[str, Any]) -> str | None:
    system, code = coding.get("system"), coding.get("code")
    return f"{system}|{code}" if isinstance(system, str) and isinstance(code, str) and system and code else None


def _any(results: Iterable[Match]) -> Match:
    """OR over the values of one condition: True if any matched, else None if any was unreadable, else False."""
    seen = list(results)
    return True if True in seen else None if None in seen else False


def _all(results: Iterable[Match]) -> Match:
    """AND over a provision's conditions: False if any failed, else None if any was unsettled, else True."""
    seen = list(results)
    return False if False in seen else None if None in seen else True


def _label_match(p: Provision, effect: Effect | None, q: ConsentQuery, caught: frozenset[str]) -> Match:
    """R4 provision.securityLabel against the resource's labels (confidentiality by rank, others exactly)."""
    if not p.labels:
        return True
    conf = [CONFIDENTIALITY_RANK[c] for c in q.labels if c in CONFIDENTIALITY_RANK]
    matched: set[str] = set()
    hit = False
    for code in p.labels:
        if code is None or code not in CONFIDENTIALITY_RANK:
            hit = hit or code in q.labels
            matched.update({code} & q.labels if code else set())
        elif effect == "permit":  # high-water mark: a permit on R covers R and lower
            hit = hit or (bool(conf) and max(conf) <= CONFIDENTIALITY_RANK[code])
        else:  # a deny on R covers R and higher; unlabelled data is N
            hit = hit or max(conf, default=_N_RANK) >= CONFIDENTIALITY_RANK[code]
    if effect == "permit" and hit and not caught <= matched:
        return False  # the permit does not name every sensitivity label an enclosing deny caught
    if hit:
        return True
    return None if None in p.labels else False


def _actor_match(p: Provision, q: ConsentQuery) -> Match:
    if not p.actors:
        return True
    return _any(None if a is None or not q.actor_refs else a in q.actor_refs for a in p.actors)


def _action_match(p: Provision, effect: Effect | None, q: ConsentQuery) -> Match:
    if not p.actions:
        return True
    if effect == "permit":
        return _any(None if a is None else a == q.action for a in p.actions)
    # a deny of any read-type action (access/use/disclose) covers every read-type access
    reading = q.action in READ_ACTIONS
    return _any(None if a is None else a == q.action or (reading and a in READ_ACTIONS) for a in p.actions)


def _data_match(p: Provision, q: ConsentQuery) -> Match:
    """R4 provision.data: instance = the resource itself; the other meanings need graph facts we may lack."""
    results: list[Match] = []
    for meaning, ref in p.data:
        if ref is None or q.resource_ref is None:
            results.append(None)
        elif ref == q.resource_ref:
            results.append(meaning != "authoredby")  # a resource is not authored by itself
        elif meaning == "instance" or (q.references is not None and ref not in q.references and meaning != "related"):
            results.append(False)
        elif meaning == "dependents" and q.references is not None:
            results.append(True)  # it refers to the target, so it is a dependent
        else:
            results.append(None)
    return _any(results) if results else True


def _conditions(p: Provision, effect: Effect | None, q: ConsentQuery, caught: frozenset[str]) -> Match:
    """Whether every condition of one provision holds for the access (R4: conditions of a rule are ANDed)."""
    return _all(
        (
            p.period is None or p.period.contains(q.now),
            _actor_match(p, q),
            _action_match(p, effect, q),
            _label_match(p, effect, q, caught),
            _any(None if c is None else c in purpose_lineage(q.purpose) for c in p.purposes) if p.purposes else True,
            _any(None if c is None else c == q.resource_type for c in p.classes) if p.classes else True,
            (None if q.codes is None else _any(None if c is None else c in q.codes for c in p.codes))
            if p.codes else True,
            (None if q.resource_date is None else p.data_period.contains(q.resource_date))
            if p.data_period else True,
            _data_match(p, q),
        )
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Outcome:
    effect: Effect
    chain: tuple[Provision, ...]  # root .. the deciding provision


def _evaluate(p: Provision, inherited: Effect | None, q: ConsentQuery, caught: frozenset[str]) -> _Outcome | None:
    """The outcome of one provision subtree, None when it does not apply (R4 nested provisions are exceptions)."""
    effect = p.type or inherited
    match = _conditions(p, effect, q, caught)
    if match is False:
        return None
    if effect != "permit" and p.labels:
        caught = caught | (q.labels & SENSITIVITY_CODES & {c for c in p.labels if c})
    results = [r for child in p.children if (r := _evaluate(child, effect, q, caught)) is not None]
    decided = next((r for r in results if r.effect == "deny"), None) or next(iter(results), None)
    outcome = _Outcome(decided.effect, (p, *decided.chain)) if decided else _Outcome(effect, (p,)) if effect else None
    if match is None and (outcome is None or outcome.effect != "deny"):
        return None  # unsettled: only its denials count
    return outcome


def _fhir_day(value: object) -> float | None:
    try:
        return parse_date_range(value)[0] if isinstance(value, str) else None
    except ValueError:
        return None


def _what(kind: str, p: Provision, q: ConsentQuery) -> str:
    """What matched, in ids, types and codes only (never PHI)."""
    if kind == "label":
        named = {c for c in p.labels if c} & q.labels or {c for c in q.labels if c in CONFIDENTIALITY_RANK}
        return f"security label {', '.join(sorted(named))}" if named else "security label"
    if kind == "actor":
        named = {a for a in p.actors if a} & q.actor_refs
        return f"actor {', '.join(sorted(named))}" if named else "actor"
    words = {"class": f"resource type {q.resource_type}", "purpose": f"purpose {q.purpose}", "action": "action "}
    words |= {"code": "resource code", "data": "data reference", "period": "data period", "all": "all access"}
    return words[kind] + (q.action if kind == "action" else "")


@dataclass(frozen=True, slots=True)
class ConsentDirective:
    """One active privacy Consent, compiled: its id, patient, Consent.dateTime, policyRule codes and provision tree."""

    id: str
    patient_id: str
    date_time: float | None  # Consent.dateTime as epoch seconds (ordering only); None when absent
    policy: frozenset[str]  # Consent.policyRule codes from v3-ActCode (OPTOUT, OPTIN, 42CFRPart2, ...)
    root: Provision | None

    @property
    def ref(self) -> str:
        return f"Consent/{self.id}"

    @property
    def base(self) -> Effect | None:
        """The base policy's effect (deny wins when policyRule carries both an opt-out and an opt-in code)."""
        if self.policy & {"OPTOUT", "OPTOUTE"}:
            return "deny"
        return "permit" if self.policy & {"OPTIN", "OPTINR"} else None

    def in_force(self, now: date | None) -> bool:
        """Whether the root provision's period covers `now` (None: period ignored, i.e. treated as in force)."""
        return now is None or self.root is None or self.root.period is None or self.root.period.contains(now)

    def full_optout(self, now: date | None = None) -> bool:
        """Whether this Consent denies every access: a deny base or unconditional deny root, and no permit anywhere."""
        if not self.in_force(now):
            return False
        if self.root is None:
            return self.base == "deny"
        effects: list[Effect | None] = []

        def collect(p: Provision, inherited: Effect | None) -> None:
            effects.append(p.type or inherited)
            for child in p.children:
                collect(child, p.type or inherited)

        collect(self.root, self.base)
        if effects[0] != "deny" or "permit" in effects:
            return False
        return self.base == "deny" or not self.root.narrowing

    def evaluate(self, query: ConsentQuery) -> Decision | None:
        """This Consent's decision on one access, or None when it has nothing to say about it."""
        if not self.in_force(query.now):
            return None
        outcome = _evaluate(self.root, self.base, query, frozenset()) if self.root else None
        if outcome is not None:
            last = outcome.chain[-1]
            if outcome.effect == "permit":
                return Decision.allow("consent.permit", f"{self.ref} {last.path} permits this access")
            kind = next((k for p in reversed(outcome.chain) for k in p.narrowing), "all")
            node = next((p for p in reversed(outcome.chain) if kind in p.narrowing), last)
            return Decision.deny(f"consent.deny.{kind}", f"{self.ref} {node.path} denies: {_what(kind, node, query)}")
        rules = ", ".join(sorted(self.policy)) or "none"
        if self.base == "deny":
            return Decision.deny("consent.deny.all", f"{self.ref} policyRule {rules} denies what no provision permits")
        if self.base == "permit":
            return Decision.allow("consent.permit", f"{self.ref} policyRule {rules} permits this access")
        if "42CFRPart2" in self.policy and "42CFRPart2" in query.labels:
            detail = f"{self.ref} policyRule 42CFRPart2 withholds security label 42CFRPart2; no provision permits it"
            return Decision.deny("consent.deny.label", detail)
        return None


@dataclass(frozen=True, slots=True)
class Rejection:
    """A Consent resource not compiled: why (no PHI), for whom when known, and whether it was unreadable.

    `unreadable` Consents (malformed but attributable to a patient) make that patient fail closed in a strict
    ConsentSet; merely inapplicable ones (status, scope) do not.
    """

    consent_id: str
    reason: str
    patient_id: str | None = None
    unreadable: bool = False


def compile_consent(resource: object) -> ConsentDirective | Rejection:
    """Compile one Consent resource; never raises (anything a loader accepted may arrive here)."""
    cid, pid = "(unknown)", None
    try:
        if not isinstance(resource, Mapping) or resource.get("resourceType") != "Consent":
            return Rejection(cid, "not a Consent resource")
        raw_id = resource.get("id")
        cid = raw_id if isinstance(raw_id, str) and _ID.fullmatch(raw_id) else "(invalid-id)"
        patient = resource.get("patient")
        ref = parse_reference(patient.get("reference")) if isinstance(patient, Mapping) else None
        if ref is None or not ref.startswith("Patient/"):
            return Rejection(cid, "patient reference missing or malformed")
        pid = ref.removeprefix("Patient/")
        status = resource.get("status")
        if cid == "(invalid-id)" or status not in _STATUSES:
            return Rejection(cid, "id or status missing or malformed", pid, unreadable=True)
        if status != "active":  # R4 Consent.status: only an active Consent is in force
            return Rejection(cid, f"status {status}", pid)
        scope = resource.get("scope")  # R4 Consent.scope (1..1); absent is read as patient-privacy
        if scope is not None:
            scopes = {c for c in (_code_in(x, _SCOPE_SYSTEMS) for x in _codings([scope], "scope")) if c}
            if scopes and "patient-privacy" not in scopes:
                return Rejection(cid, f"scope {min(scopes)} does not govern information access", pid)
        rule = resource.get("policyRule")  # R4 Consent.policyRule (CodeableConcept); an STU3 uri string has no code
        policy: set[str] = set()
        if isinstance(rule, Mapping):
            for coding in _codings([rule], "policyRule"):
                system, code = coding.get("system"), coding.get("code")
                if (
                    isinstance(code, str)
                    and _CODE.fullmatch(code)
                    and (system is None or canonical_system(system) == ACTCODE_SYSTEM)
                ):
                    policy.add(code)
        elif rule is not None and not isinstance(rule, str):
            raise _Malformed("policyRule")
        raw = resource.get("provision")
        root = None if raw is None else _provision(raw, "provision", 0, [_MAX_NODES])
        return ConsentDirective(cid, pid, _fhir_day(resource.get("dateTime")), frozenset(policy), root)
    except _Malformed as exc:
        return Rejection(cid, f"malformed element {exc.args[0]}", pid, unreadable=pid is not None)
    except Exception:  # a hostile Mapping or an unforeseen shape: never escape, fail closed for the patient
        return Rejection(cid, "unreadable Consent", pid, unreadable=pid is not None)


def _patient_arg(patient_id: object) -> str:
    pid = patient_id.removeprefix("Patient/") if isinstance(patient_id, str) else ""
    if not _ID.fullmatch(pid):
        raise InvalidInput("patient_id", "must be a Patient id", "e.g. pat-000001 or Patient/pat-000001")
    return pid


class ConsentSet:
    """The active privacy Consents of a practice grouped by patient, with what was skipped and why.

    `strict` (default True): a patient with an unreadable Consent fails closed (`consent.unreadable`) in
    `opted_out` and `evaluate`, and counts in `patients_opted_out` and `patients_with_rules`.
    """

    def __init__(self, items: Iterable[ConsentDirective | Rejection] = (), *, strict: bool = True) -> None:
        self.strict = strict
        self._by_patient: dict[str, list[ConsentDirective]] = {}
        self._rejections: list[Rejection] = []
        for item in items:
            if isinstance(item, ConsentDirective):
                self._by_patient.setdefault(item.patient_id, []).append(item)
            else:
                self._rejections.append(item)
        for directives in self._by_patient.values():  # most recent first, then by id: deterministic details
            directives.sort(key=lambda d: (-(d.date_time if d.date_time is not None else float("-inf")), d.id))
        self._unreadable = {r.patient_id: r for r in reversed(self._rejections) if r.unreadable and r.patient_id}

    @classmethod
    def from_resources(cls, resources: Iterable[Mapping[str, Any]], *, strict: bool = True) -> ConsentSet:
        """Compile every Consent among `resources`; bad items are listed in `ignored`, never raised.

        Errors raised by the iterable itself (a failing store cursor) propagate: a half-read set must not pass.
        """
        if isinstance(resources, str | bytes | Mapping) or not isinstance(resources, Iterable):
            raise InvalidInput("resources", "must be an iterable of Consent resources")
        return cls((compile_consent(r) for r in resources), strict=strict)

    @property
    def ignored(self) -> list[tuple[str, str]]:
        """(Consent id, reason) for every resource not compiled: inactive, out of scope, unattributable, malformed."""
        return [(r.consent_id, r.reason) for r in self._rejections]

    @property
    def rejections(self) -> tuple[Rejection, ...]:
        return tuple(self._rejections)

    def directives(self, patient_id: str) -> tuple[ConsentDirective, ...]:
        """The patient's active privacy Consents, most recent first."""
        return tuple(self._by_patient.get(_patient_arg(patient_id), ()))

    def patients_with_rules(self) -> frozenset[str]:
        """Patients with any active privacy Consent (opt-outs included; unreadable ones too when strict)."""
        return frozenset(self._by_patient) | (frozenset(self._unreadable) if self.strict else frozenset())

    def patients_with_unreadable(self) -> frozenset[str]:
        """Patients with a Consent that could not be read (whatever `strict` says)."""
        return frozenset(self._unreadable)

    def patients_opted_out(self, now: date | None = None) -> frozenset[str]:
        """Patients wholly removed from AI access at `now` (None: any opt-out counts, whatever its period)."""
        return frozenset(pid for pid in self.patients_with_rules() if self._gate(pid, now) is not None)

    def _gate(self, pid: str, now: date | None) -> Decision | None:
        bad = self._unreadable.get(pid) if self.strict else None
        if bad is not None:
            detail = f"Consent/{bad.consent_id} could not be read ({bad.reason}); access fails closed"
            return Decision.deny("consent.unreadable", detail)
        for d in self._by_patient.get(pid, ()):
            if d.full_optout(now):
                how = "policyRule OPTOUT" if d.base == "deny" else "an unconditional deny provision"
                return Decision.deny("consent.optout", f"{d.ref} opts the patient out of AI access ({how})")
        return None

    def opted_out(self, patient_id: str, now: date | None = None) -> Decision:
        """May AI reach this patient at all? Denied (`consent.optout`, `consent.unreadable`) when wholly excluded.

        Allowed reasons: `consent.none` (no active Consent) or `consent.rules` (Consents to evaluate per access).
        Without `now` every opt-out counts whatever its period (fail closed).
        """
        pid = _patient_arg(patient_id)
        gate = self._gate(pid, now)
        if gate is not None:
            return gate
        if pid in self._by_patient:
            return Decision.allow("consent.rules", f"{len(self._by_patient[pid])} active Consent(s); none opts out")
        return Decision.allow("consent.none", "no active privacy Consent")

    def evaluate(self, patient_id: str, query: ConsentQuery) -> Decision:
        """The patient's Consents on one access: any applicable deny wins, else a permit, else `consent.none`."""
        pid = _patient_arg(patient_id)
        if not isinstance(query, ConsentQuery):
            raise InvalidInput("query", "must be a ConsentQuery")
        gate = self._gate(pid, query.now)
        if gate is not None:
            return gate
        permit: Decision | None = None
        for directive in self._by_patient.get(pid, ()):
            decision = directive.evaluate(query)
            if decision is not None and not decision.allowed:
                return decision
            permit = permit or decision
        return permit or Decision.allow("consent.none", "no active Consent applies to this access")
