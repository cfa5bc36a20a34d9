"""What a load did: resources stored per type, what was rejected and why, throughput; plus load events.

Rejection reasons name the file, the bundle entry index or NDJSON line, and the element path; they never
carry record content (no PHI), so the summary can be printed and logged as is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

EventKind = Literal["file-start", "file-done", "rejected", "written"]


@dataclass(frozen=True, slots=True)
class Rejection:
    """One rejected unit: a whole file/bundle (entry=None, line=None), a bundle entry, or an NDJSON line."""

    file: str
    reason: str
    entry: int | None = None
    line: int | None = None

    def describe(self) -> str:
        """`file[entry 3]: reason` or `file:12: reason`."""
        where = self.file
        if self.entry is not None:
            where += f" [entry {self.entry}]"
        if self.line is not None:
            where += f":{self.line}"
        return f"{where}: {self.reason}"


@dataclass(frozen=True, slots=True)
class LoadEvent:
    """Reported to `on_event` as a load progresses: file boundaries, rejections, and resources written."""

    kind: EventKind
    file: str
    resources: int = 0
    bytes: int = 0
    rejection: Rejection | None = None


EventHandler = Callable[[LoadEvent], None]


@dataclass(slots=True)
class LoadSummary:
    """Totals of one load_paths call."""

    files: int = 0
    loaded: Counter[str] = field(default_factory=Counter)
    # Entries of types fhirgate does not store, skipped inside bundles (not errors).
    skipped: Counter[str] = field(default_factory=Counter)
    # Conditional creates (ifNoneExist) that matched a stored resource, so nothing was written.
    existing: int = 0
    deleted: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    elapsed: float = 0.0
    validation: str = "full"

    @property
    def resources(self) -> int:
        """Resources written."""
        return sum(self.loaded.values())

    @property
    def rate(self) -> float:
        """Resources written per second."""
        return self.resources / self.elapsed if self.elapsed > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (for `fhirgate load --json` and benchmarks)."""
        return {
            "files": self.files,
            "resources": self.resources,
            "loaded": dict(sorted(self.loaded.items())),
            "skipped": dict(sorted(self.skipped.items())),
            "existing": self.existing,
            "deleted": self.deleted,
            "rejected": [{"file": r.file, "entry": r.entry, "line": r.line, "reason": r.reason} for r in self.rejected],
            "elapsed_s": round(self.elapsed, 3),
            "resources_per_s": round(self.rate, 1),
            "validation": self.validation,
        }

    def render(self) -> str:
        """A plain-text report for the terminal."""
        lines = [
            f"Loaded {self.resources} resources from {self.files} files in {self.elapsed:.2f}s "
            f"({self.rate:,.0f} resources/s, validation={self.validation})"
        ]
        lines.extend(f"  {rtype:<24} {n:>8}" for rtype, n in sorted(self.loaded.items()))
        if self.existing:
            lines.append(f"  already present (ifNoneExist): {self.existing}")
        if self.deleted:
            lines.append(f"  deleted: {self.deleted}")
        if self.skipped:
            kinds = ", ".join(f"{t} {n}" for t, n in sorted(self.skipped.items()))
            lines.append(f"  skipped (types not stored by fhirgate): {kinds}")
        if self.rejected:
            lines.append(f"Rejected {len(self.rejected)}:")
            lines.extend(f"  {r.describe()}" for r in self.rejected)
        else:
            lines.append("Rejected: none")
        return "\n".join(lines)


def progress_handler(total_bytes: int) -> tuple[EventHandler, Callable[[], None]]:
    """A rich progress bar over bytes read, showing resources stored; returns (handler, close)."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("[bold]loading"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[resources]:>9,} resources"),
        TextColumn("{task.fields[rejected]} rejected"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    task = progress.add_task("load", total=total_bytes, resources=0, rejected=0)
    progress.start()
    counts = {"resources": 0, "rejected": 0, "bytes": 0}

    def handle(event: LoadEvent) -> None:
        if event.kind == "file-start":
            counts["bytes"] = event.bytes
        elif event.kind == "written":
            counts["resources"] += event.resources
        elif event.kind == "rejected":
            counts["rejected"] += 1
        elif event.kind == "file-done":
            progress.update(task, advance=counts["bytes"], resources=counts["resources"], rejected=counts["rejected"])
            counts["bytes"] = 0

    return handle, progress.stop
