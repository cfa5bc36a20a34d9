"""`fhirgate policy check FILE | show [--file FILE] [--role NAME]`: validate and print governance policies.

`check` exits 0 with a summary line per role, or 2 with every issue on stderr (also for a missing or
unreadable file), so scripts and CI can gate a deployment on it. `show` prints the effective policy
(the packaged default unless --file) as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fhirgate.core.policy.rules import Policy, PolicyError, Role, policy_to_dict
from fhirgate.errors import ConfigError, InvalidInput

AddData = Callable[[argparse.ArgumentParser], None]
EXIT_INVALID = 2


def register(sub: Any, add_data: AddData) -> None:
    """Add the `policy` command and its verbs (no data directory needed)."""
    p = sub.add_parser("policy", help="validate and show the governance policy (roles, purposes, labels, limits)")
    verbs = p.add_subparsers(dest="policy_verb", metavar="VERB")
    verbs.required = True

    c = verbs.add_parser("check", help="validate a policy file; exit 2 and list every issue when invalid")
    c.add_argument("file", metavar="FILE", help="the policy TOML file")
    c.set_defaults(handler=cmd_check)

    s = verbs.add_parser("show", help="print the effective policy as JSON (the packaged default unless --file)")
    s.add_argument("--file", metavar="FILE", help="a policy TOML file instead of the packaged default")
    s.add_argument("--role", metavar="NAME", help="print only this role")
    s.set_defaults(handler=cmd_show)


def role_summary(role: Role, all_types: int) -> str:
    """One line describing a role: access, types, purposes and the grants that widen it."""
    types = f"all {all_types} types" if role.resource_types is None else f"{len(role.resource_types)} types"
    parts = [role.access, types, "purposes " + " ".join(role.purposes)]
    if role.sensitive:
        parts.append("sensitive " + " ".join(sorted(role.sensitive)))
    if role.break_glass:
        parts.append(f"break-glass {role.break_glass_minutes} min")
    if role.deidentify:
        parts.append("de-identified")
    parts.append("all tools" if role.tools is None else f"{len(role.tools)} tools")
    return f"  {role.name}: {', '.join(parts)}"


def _load(path: Path | None) -> Policy | int:
    """The policy, or EXIT_INVALID after printing why on stderr."""
    from fhirgate.policy_loader import load_policy

    try:
        return load_policy(path)
    except PolicyError as exc:
        count = len(exc.issues)
        print(f"fhirgate: policy {exc.source} is invalid ({count} issue{'s' if count != 1 else ''}):", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        return EXIT_INVALID
    except ConfigError as exc:
        print(f"fhirgate: error: {exc.message}", file=sys.stderr)
        return EXIT_INVALID


def cmd_check(args: argparse.Namespace) -> int:
    """Validate FILE; print `policy OK` and a line per role, or every issue on stderr and exit 2."""
    from fhirgate.core.fhir.validate import supported_types

    policy = _load(Path(args.file))
    if isinstance(policy, int):
        return policy
    print(f"policy OK: {policy.source}: {len(policy.roles)} roles: {', '.join(policy.roles)}")
    for role in policy.roles.values():
        print(role_summary(role, len(supported_types())))
    who = f"default role {policy.default_role}" if policy.default_role else "no default role (unresolved refused)"
    print(f"  roles from claim {policy.role_claim!r}; {who}; practitioners {policy.practitioner_role}; ", end="")
    print(f"patients {policy.patient_role}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Print the effective policy (or one role) as JSON."""
    policy = _load(Path(args.file) if args.file else None)
    if isinstance(policy, int):
        return policy
    data = policy_to_dict(policy)
    if args.role is not None:
        if args.role not in policy.roles:
            raise InvalidInput("--role", "unknown role", ", ".join(policy.roles))
        data = {"source": data["source"], "roles": {args.role: data["roles"][args.role]}}
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
