"""Validation of a governance policy file into the rules.py model, collecting every issue at once.

Pure: `parse_policy` validates a Mapping and `load_policy_text` TOML text (policy_loader.py reads files).
Every problem is collected as `dotted.path: problem; what is allowed` and raised together as one
PolicyError, so `fhirgate policy check` shows them all. Element names are checked against the generated
FHIR structure through core/fhir/validate.py's public accessors.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from fhirgate.core.fhir import validate
from fhirgate.core.policy.rules import (
    ACCESS_KINDS,
    ALWAYS_KEPT,
    DEFAULT_ROLE_CLAIM,
    DEFAULT_SENSITIVE_LABELS,
    KNOWN_LABELS,
    KNOWN_TOOLS,
    NEVER_SENSITIVE,
    PROPOSAL_TTL_HOURS_MAX,
    PURPOSES,
    FieldRule,
    Policy,
    PolicyError,
    RateRule,
    Role,
    WritePolicy,
    shown,
)


def load_policy_text(text: str, source: str) -> Policy:
    """Parse and validate TOML policy text; syntax errors become a PolicyError with line and column."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(source, (f"TOML syntax error: {exc}",)) from None
    return parse_policy(data, source)


def parse_policy(data: Mapping[str, Any], source: str) -> Policy:
    """Validate a policy mapping (as parsed from TOML) and build the Policy; all issues raise together."""
    return _Parser(source).policy(data)


# ---- keys and limits ---------------------------------------------------------------------------------------

_TOP_KEYS: tuple[str, ...] = (
    "version",
    "role_claim",
    "default_role",
    "practitioner_role",
    "patient_role",
    "sensitive_labels",
    "rate_limits",
    "writes",
    "roles",
)
_WRITES_KEYS = ("enabled", "proposal_ttl_hours")
_RATE_LIMIT_KEYS = ("capacity", "refill_per_second", "redis_url", "costs")
_RATE_KEYS = ("capacity", "refill_per_second")
_ROLE_KEYS: tuple[str, ...] = (
    "description",
    "access",
    "resource_types",
    "purposes",
    "sensitive",
    "sensitive_purposes",
    "break_glass",
    "break_glass_minutes",
    "break_glass_sensitive",
    "deidentify",
    "optout_aggregates",
    "fields",
    "tools",
    "rate",
    "write_types",
)
_FIELD_KEYS = ("include", "exclude")
_MAX_RATE = 1_000_000.0
_MAX_COST = 1000
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_CLAIM = re.compile(r"[!-~]{1,128}")
_KEY = re.compile(r"[A-Za-z0-9_*.\-\[\]]{1,64}")


def _hint(word: str, options: frozenset[str] | tuple[str, ...]) -> str:
    from difflib import get_close_matches

    close = get_close_matches(word, sorted(options), n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


class _Parser:
    """Walks a policy mapping once, collecting every issue with its dotted path."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.issues: list[str] = []
        self.served = validate.supported_types()
        self.r4_types = validate.r4_resource_types()
        self.specs: dict[str, tuple[frozenset[str], dict[str, frozenset[str]]]] = {}

    def add(self, path: str, problem: str) -> None:
        self.issues.append(f"{path}: {problem}")

    # -- generic shapes --

    def table(
        self, value: object, path: str, keys: tuple[str, ...], required: tuple[str, ...] = ()
    ) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.add(path or "(top level)", "must be a table")
            return {}
        for key in value:
            if not isinstance(key, str) or not _KEY.fullmatch(key):
                self.add(path or "(top level)", "has a key that is not a plain name")
            elif key not in keys:
                self.add(f"{path}.{key}" if path else key, f"unknown key; allowed: {', '.join(keys)}{_hint(key, keys)}")
        for key in required:
            if key not in value:
                self.add(f"{path}.{key}" if path else key, "is required")
        return value

    def boolean(self, value: object, path: str) -> bool:
        if not isinstance(value, bool):
            self.add(path, "must be true or false")
            return False
        return value

    def number(self, value: object, path: str, low: float, high: float, *, integer: bool = False) -> float:
        ok = isinstance(value, int) if integer else isinstance(value, int | float)
        if not ok or isinstance(value, bool):
            self.add(path, f"must be {'an integer' if integer else 'a number'} from {low:g} to {high:g}")
            return low
        assert isinstance(value, int | float)
        if not low <= value <= high or value != value:
            self.add(path, f"{value:g} is out of range; use {low:g} to {high:g}")
            return low
        return value

    def role_ref(self, value: object, path: str, roles: Mapping[str, Role]) -> str | None:
        if not isinstance(value, str) or value not in roles:
            what = f"{shown(value)} is not a defined role" if isinstance(value, str) else "must be a role name"
            self.add(path, f"{what}; defined roles: {', '.join(roles) or 'none'}")
            return None
        return value

    def codes(
        self, value: object, path: str, known: frozenset[str], what: str, *, star: bool = False
    ) -> frozenset[str] | None:
        """A list of codes from `known`; with `star`, "*" (or ["*"]) means all and returns None."""
        if star and (value == "*" or value == ["*"]):
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.add(path, "must be a list of strings" + (' or "*"' if star else ""))
            return frozenset()
        found: set[str] = set()
        for item in value:
            if item == "*" and star:
                self.add(path, "'*' must stand alone (it means all)")
            elif item in found:
                self.add(path, f"{shown(item)} is listed twice")
            elif item not in known:
                self.add(path, self.unknown(item, known, what))
            found.add(item)
        return frozenset(found & known)

    def unknown(self, item: str, known: frozenset[str], what: str) -> str:
        if what == "resource type" and item in self.r4_types:
            return f"{shown(item)} is a FHIR R4 type fhirgate does not serve; use one of {', '.join(sorted(known))}"
        hint = _hint(item, known).removeprefix("; ")
        hint = f" ({hint})" if hint else ""
        return f"{shown(item)} is not a known {what}{hint}; use one of {', '.join(sorted(known))}"

    def rate(self, value: object, path: str) -> RateRule:
        t = self.table(value, path, _RATE_KEYS, required=_RATE_KEYS)
        cap = self.number(t.get("capacity", 1), f"{path}.capacity", 1, _MAX_RATE)
        refill = self.number(t.get("refill_per_second", 1), f"{path}.refill_per_second", 0.001, _MAX_RATE)
        return RateRule(float(cap), float(refill))

    # -- elements --

    def spec(self, rtype: str) -> tuple[frozenset[str], dict[str, frozenset[str]]]:
        """(JSON element names, choice base -> concrete names) of a served type, looked up once per parse."""
        found = self.specs.get(rtype)
        if found is None:
            found = (validate.element_names(rtype) or frozenset(), validate.choice_forms(rtype) or {})
            self.specs[rtype] = found
        return found

    def expand(self, rtype: str, name: str) -> frozenset[str]:
        """The JSON names an element name stands for in `rtype` (`value[x]`/`value` -> valueQuantity, ...)."""
        names, choices = self.spec(rtype)
        base = name.removesuffix("[x]")
        if base in choices:
            return choices[base]
        return frozenset({name}) if name in names else frozenset()

    def element_names(self, value: object, path: str, types: tuple[str, ...]) -> frozenset[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.add(path, "must be a list of element names")
            return frozenset()
        out: set[str] = set()
        for name in value:
            found = frozenset().union(*(self.expand(t, name) for t in types))
            if not found:
                where = types[0] if len(types) == 1 else "any resource type the role sees"
                known: frozenset[str] = frozenset()
                if len(types) == 1:  # the hint offers plain element names, not every choice form
                    names, choices = self.spec(types[0])
                    known = names.difference(*choices.values())
                self.add(path, f"{shown(name)} is not an element of {where}{_hint(name, known)}")
            out |= found
        return frozenset(out)

    def field_rule(self, value: object, path: str, types: tuple[str, ...]) -> FieldRule:
        t = self.table(value, path, _FIELD_KEYS)
        include = None if "include" not in t else self.element_names(t["include"], f"{path}.include", types)
        exclude = self.element_names(t.get("exclude", []), f"{path}.exclude", types)
        for name in sorted(exclude & ALWAYS_KEPT):
            self.add(f"{path}.exclude", f"{name!r} is always kept (id, resourceType, meta and modifiers); remove it")
        if include is not None and len(types) == 1:
            for name in sorted(exclude - include - ALWAYS_KEPT):
                self.add(f"{path}.exclude", f"{name!r} is not in include, so excluding it has no effect")
        return FieldRule(include, exclude - ALWAYS_KEPT)

    # -- roles and the policy --

    def role(self, name: str, value: object, sensitive_labels: frozenset[str]) -> Role:
        p = f"roles.{name}"
        t = self.table(value, p, _ROLE_KEYS, required=("access", "resource_types", "purposes"))
        access = t.get("access", "practice")
        if access not in ACCESS_KINDS:
            shown_access = shown(access) if isinstance(access, str) else "(not a string)"
            self.add(f"{p}.access", f"{shown_access} is not allowed; use one of {', '.join(ACCESS_KINDS)}")
            access = "practice"
        description = t.get("description", "")
        if not isinstance(description, str) or len(description) > 500:
            self.add(f"{p}.description", "must be a string of at most 500 characters")
            description = ""
        types = self.codes(t.get("resource_types", []), f"{p}.resource_types", self.served, "resource type", star=True)
        purposes: tuple[str, ...] = ()
        raw_purposes = t.get("purposes", ["TREAT"])
        listed = self.codes(raw_purposes, f"{p}.purposes", PURPOSES, "purpose of use (v3-ActReason)")
        if isinstance(raw_purposes, list):
            purposes = tuple(x for x in raw_purposes if isinstance(x, str) and listed and x in listed)
            purposes = tuple(dict.fromkeys(purposes))
            if not raw_purposes:
                self.add(f"{p}.purposes", "must name at least one purpose; the first is the default")
        sens = self.labels(t.get("sensitive", []), f"{p}.sensitive", sensitive_labels)
        sens_purposes = self.codes(t.get("sensitive_purposes", []), f"{p}.sensitive_purposes", PURPOSES, "purpose")
        for code in sorted((sens_purposes or frozenset()) - set(purposes) & PURPOSES):
            self.add(f"{p}.sensitive_purposes", f"{code!r} is not one of the role's purposes ({', '.join(purposes)})")
        bg = self.boolean(t.get("break_glass", False), f"{p}.break_glass")
        bg_minutes = int(
            self.number(t.get("break_glass_minutes", 60), f"{p}.break_glass_minutes", 1, 1440, integer=True)
        )
        bg_sens = self.labels(t.get("break_glass_sensitive", []), f"{p}.break_glass_sensitive", sensitive_labels)
        if bg and access == "own-record":
            self.add(f"{p}.break_glass", "break-glass is for care-team and practice roles, not own-record")
        if bg_sens and not bg:
            self.add(f"{p}.break_glass_sensitive", "has no effect while break_glass is false; set break_glass = true")
        role_types = tuple(sorted(self.served if types is None else types))
        fields: dict[str, FieldRule] = {}
        for rtype, rule in self.table(t.get("fields", {}), f"{p}.fields", ("*", *sorted(self.served))).items():
            if rtype != "*" and rtype not in self.served:
                continue  # reported as an unknown key
            if rtype != "*" and rtype not in role_types:
                self.add(
                    f"{p}.fields.{rtype}", f"the role may not see {rtype}; add it to resource_types or remove this"
                )
                continue
            fields[rtype] = self.field_rule(rule, f"{p}.fields.{rtype}", (rtype,) if rtype != "*" else role_types)
        tools = self.codes(t.get("tools", "*"), f"{p}.tools", KNOWN_TOOLS, "tool", star=True)
        rate = self.rate(t["rate"], f"{p}.rate") if "rate" in t else None
        deidentify = self.boolean(t.get("deidentify", False), f"{p}.deidentify")
        write_types = self.write_types(t.get("write_types", []), f"{p}.write_types", types, deidentify)
        optout_aggregates = self.boolean(t.get("optout_aggregates", False), f"{p}.optout_aggregates")
        if optout_aggregates:
            # Refused rather than accepted and ignored: opted-out patients are left out of every count today.
            self.add(
                f"{p}.optout_aggregates",
                "true is not supported yet: opted-out patients are left out of every count; remove it or set false",
            )
        return Role(
            name=name,
            description=description,
            access=access,
            resource_types=types,
            purposes=purposes or ("TREAT",),
            sensitive=sens,
            sensitive_purposes=sens_purposes or frozenset(),
            break_glass=bg,
            break_glass_minutes=bg_minutes,
            break_glass_sensitive=bg_sens,
            deidentify=deidentify,
            optout_aggregates=optout_aggregates,
            fields=MappingProxyType(fields),
            tools=tools,
            rate=rate,
            write_types=write_types,
        )

    def write_types(self, value: object, path: str, types: frozenset[str] | None, deidentify: bool) -> frozenset[str]:
        """The types a role may propose writes for: served types it may see; none for a de-identified role."""
        listed = self.codes(value, path, self.served, "resource type") or frozenset()
        visible = self.served if types is None else types
        for rtype in sorted(listed - visible):
            self.add(
                path,
                f"{rtype!r} is not in the role's resource_types (a role cannot write what it may not see); "
                f"add it to resource_types or use some of {', '.join(sorted(visible)) or 'none'}",
            )
        if listed and deidentify:
            # A de-identified role never sees identified records, so it could not review the diff it proposes.
            self.add(
                path,
                "a de-identified role (deidentify = true) cannot propose writes: it never sees the identified "
                "record it would change; remove write_types or set deidentify = false",
            )
            return frozenset()
        return listed & visible

    def writes(self, value: object) -> WritePolicy:
        """The [writes] table: whether write tools are on (default off: read-only) and the proposal lifetime."""
        t = self.table(value, "writes", _WRITES_KEYS)
        enabled = self.boolean(t.get("enabled", False), "writes.enabled")
        ttl = self.number(
            t.get("proposal_ttl_hours", 24), "writes.proposal_ttl_hours", 1, PROPOSAL_TTL_HOURS_MAX, integer=True
        )
        return WritePolicy(enabled=enabled, proposal_ttl_hours=int(ttl))

    def labels(self, value: object, path: str, sensitive_labels: frozenset[str]) -> frozenset[str]:
        found = self.codes(value, path, KNOWN_LABELS, "security label") or frozenset()
        for code in sorted(found - sensitive_labels):
            self.add(
                path, f"{code!r} is not a sensitive label of this policy (sensitive_labels), so it is always visible"
            )
        return found & sensitive_labels

    def policy(self, data: Mapping[str, Any]) -> Policy:
        top = self.table(data, "", _TOP_KEYS)
        if "version" in top and top["version"] != 1:
            self.add("version", "only version 1 is supported")
        claim = top.get("role_claim", DEFAULT_ROLE_CLAIM)
        if not isinstance(claim, str) or not _CLAIM.fullmatch(claim):
            self.add("role_claim", "must be a JWT claim name (1-128 printable characters, no spaces)")
            claim = DEFAULT_ROLE_CLAIM
        sensitive = (
            self.codes(
                top.get("sensitive_labels", sorted(DEFAULT_SENSITIVE_LABELS)),
                "sensitive_labels",
                KNOWN_LABELS,
                "security label",
            )
            or frozenset()
        )
        for code in sorted(sensitive & NEVER_SENSITIVE):
            self.add(
                "sensitive_labels", f"{code!r} is an ordinary confidentiality level (U, L, M, N are never sensitive)"
            )
        sensitive -= NEVER_SENSITIVE
        roles: dict[str, Role] = {}
        raw_roles = top.get("roles", {})
        if not isinstance(data, Mapping):
            pass  # reported above
        elif "roles" not in top:
            self.add("roles", "is required: at least one [roles.NAME] table")
        elif not isinstance(raw_roles, Mapping) or not raw_roles:
            self.add("roles", "must be a table with at least one [roles.NAME] table")
        else:
            for name, value in raw_roles.items():
                if not isinstance(name, str) or not _NAME.fullmatch(name):
                    self.add("roles", f"{shown(name)} is not a valid role name; use lower-case letters, digits and _")
                    continue
                roles[name] = self.role(name, value, sensitive)
        rate_default, costs, redis_url = self.rate_limits(top.get("rate_limits", {}), roles)
        writes = self.writes(top.get("writes", {}))
        refs: dict[str, str | None] = {}
        for key, default, want_own in (
            ("default_role", None, False),
            ("practitioner_role", "clinician", False),
            ("patient_role", "patient", True),
        ):
            value = top.get(key, default)
            if not roles and value == default:
                refs[key] = None  # no roles parsed: the "roles" issue already says so
                continue
            if value is not None and key not in top and value not in roles:
                self.add(
                    key, f"{value!r} (the default when {key} is absent) is not a defined role; define it or set {key}"
                )
                refs[key] = None
            else:
                refs[key] = None if value is None else self.role_ref(value, key, roles)
            ref = refs[key]
            if ref is not None and (roles[ref].access == "own-record") != want_own:
                need = "an own-record role" if want_own else "a care-team or practice role (not own-record)"
                self.add(key, f"{ref!r} is {roles[ref].access}; {key} must name {need}")
        if self.issues:
            raise PolicyError(self.source, tuple(self.issues))
        return Policy(
            source=self.source,
            roles=MappingProxyType(roles),
            role_claim=claim,
            default_role=refs["default_role"],
            practitioner_role=refs["practitioner_role"] or "clinician",
            patient_role=refs["patient_role"] or "patient",
            sensitive_labels=sensitive,
            rate_default=rate_default,
            tool_costs=MappingProxyType(costs),
            redis_url=redis_url,
            writes=writes,
        )

    def rate_limits(self, value: object, roles: Mapping[str, Role]) -> tuple[RateRule, dict[str, int], str | None]:
        t = self.table(value, "rate_limits", _RATE_LIMIT_KEYS)
        default = RateRule(60.0, 1.0)
        if "capacity" in t or "refill_per_second" in t:
            default = self.rate({k: v for k, v in t.items() if k in _RATE_KEYS}, "rate_limits")
        redis_url = t.get("redis_url")
        if redis_url is not None and (
            not isinstance(redis_url, str) or not re.fullmatch(r"(rediss?|unix)://\S+", redis_url)
        ):
            # Never echo the value: a Redis URL may carry a password.
            self.add("rate_limits.redis_url", "must be a redis://, rediss:// or unix:// URL (value not shown)")
            redis_url = None
        costs: dict[str, int] = {}
        for tool, cost in self.table(t.get("costs", {}), "rate_limits.costs", tuple(sorted(KNOWN_TOOLS))).items():
            if tool in KNOWN_TOOLS:
                costs[tool] = int(self.number(cost, f"rate_limits.costs.{tool}", 1, _MAX_COST, integer=True))
        buckets = [("the default bucket", default)] + [(f"role {r.name}", r.rate) for r in roles.values() if r.rate]
        for tool, cost in sorted(costs.items()):
            for who, bucket in buckets:
                if cost > bucket.capacity:
                    self.add(
                        f"rate_limits.costs.{tool}",
                        f"{cost} exceeds the capacity {bucket.capacity:g} of {who}; the tool could never run",
                    )
        return default, costs, redis_url
