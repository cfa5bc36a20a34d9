"""A readable field-level diff between a stored resource and a proposed one, for the model and the human approver.

The diff holds values from the resources (PHI): it is returned to the caller that may see both
versions and is never logged. Paths use FHIRPath-like dotted names with array indexes
(`participant[0].status`); FHIR arrays are ordered (FHIR R4 §2.6.2 "the order of repeating elements
is significant"), so arrays are compared position by position.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

# Server-managed meta elements (FHIR R4 §3.1.0.5): they change on every write and are not part of a proposal.
IGNORED_PATHS: frozenset[str] = frozenset({"meta.versionId", "meta.lastUpdated"})
OPS: tuple[str, ...] = ("added", "removed", "changed")
_MAX_SHOWN = 160
_MAX_CHANGES = 500


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One difference: `path`, what happened (`added`, `removed`, `changed`), and the old and new values."""

    path: str
    op: str
    old: Any = None
    new: Any = None

    @property
    def top(self) -> str:
        """The top-level element the change is in (`participant` for `participant[0].status`)."""
        return self.path.split(".", 1)[0].split("[", 1)[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON form for tool results: path, op and the values that apply."""
        out: dict[str, Any] = {"path": self.path, "op": self.op}
        if self.op != "added":
            out["old"] = self.old
        if self.op != "removed":
            out["new"] = self.new
        return out


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _walk(old: Any, new: Any, path: str, out: list[FieldChange]) -> None:
    if len(out) >= _MAX_CHANGES or path in IGNORED_PATHS:
        return
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted(set(old) | set(new), key=str):
            sub = _join(path, str(key))
            if key not in new:
                if sub not in IGNORED_PATHS:
                    out.append(FieldChange(sub, "removed", old=old[key]))
            elif key not in old:
                if sub not in IGNORED_PATHS:
                    out.append(FieldChange(sub, "added", new=new[key]))
            else:
                _walk(old[key], new[key], sub, out)
        return
    if _is_list(old) and _is_list(new):
        for i in range(max(len(old), len(new))):
            sub = f"{path}[{i}]"
            if i >= len(new):
                out.append(FieldChange(sub, "removed", old=old[i]))
            elif i >= len(old):
                out.append(FieldChange(sub, "added", new=new[i]))
            else:
                _walk(old[i], new[i], sub, out)
        return
    # bool is an int in Python: True == 1 must still count as a change of JSON type.
    if type(old) is not type(new) or old != new:
        out.append(FieldChange(path, "changed", old=old, new=new))


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def diff_resources(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[FieldChange]:
    """The changes turning `old` into `new` (None: absent, as for a create or a delete), in path order.

    A create lists every element as added, a delete every element as removed. At most 500 changes are
    listed; meta.versionId and meta.lastUpdated are ignored.
    """
    out: list[FieldChange] = []
    _walk(old or {}, new or {}, "", out)
    return out


def changed_elements(changes: Sequence[FieldChange]) -> frozenset[str]:
    """The top-level element names touched by the changes."""
    return frozenset(c.top for c in changes)


def show_value(value: Any) -> str:
    """A value as compact JSON, cut at 160 characters with an ellipsis."""
    try:
        text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError):
        text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 1] + "…"


def render_diff(changes: Sequence[FieldChange]) -> str:
    """One line per change: `+ path: new`, `- path: old`, `~ path: old → new`; `(no changes)` when empty."""
    if not changes:
        return "(no changes)"
    lines: list[str] = []
    for c in changes:
        if c.op == "added":
            lines.append(f"+ {c.path}: {show_value(c.new)}")
        elif c.op == "removed":
            lines.append(f"- {c.path}: {show_value(c.old)}")
        else:
            lines.append(f"~ {c.path}: {show_value(c.old)} → {show_value(c.new)}")
    return "\n".join(lines)
