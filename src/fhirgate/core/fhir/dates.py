"""FHIR date, dateTime and instant values as inclusive epoch-second ranges (FHIR R4 §2.24.0.1, §3.1.1.4.5)."""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta

_DATE_RE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2})(?::(?P<M>\d{2})(?::(?P<S>\d{2})(?P<f>\.\d+)?)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)

_EPS = 1e-6  # one microsecond: the high bound is inclusive


def parse_date_range(value: str) -> tuple[float, float]:
    """The [low, high] instants (epoch seconds, inclusive) a FHIR date/dateTime/instant denotes.

    "2020" spans the whole year; "2020-03-04T10:00" spans that minute. Values without a zone are
    taken as UTC. Raises ValueError for anything that is not a FHIR date form.
    """
    match = _DATE_RE.match(value.strip())
    if not match:
        raise ValueError("not a FHIR date: expected YYYY[-MM[-DD[Thh:mm[:ss[.fff]][Z|+hh:mm]]]]")
    g = match.groupdict()
    year = int(g["y"])
    month = int(g["m"] or 1)
    day = int(g["d"] or 1)
    hour = int(g["H"] or 0)
    minute = int(g["M"] or 0)
    second = int(g["S"] or 0)
    frac = g["f"]
    micro = round(float(frac) * 1_000_000) if frac else 0
    if micro >= 1_000_000:
        micro = 999_999
    try:
        start = datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
    except ValueError as exc:
        raise ValueError(f"not a valid calendar date: {exc}") from None
    tz = g["tz"]
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        offset = timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
        start -= sign * offset
    if g["m"] is None:
        end = start.replace(year=year + 1)
    elif g["d"] is None:
        days = calendar.monthrange(year, month)[1]
        end = start + timedelta(days=days)
    elif g["H"] is None:
        end = start + timedelta(days=1)
    elif g["S"] is None:
        end = start + timedelta(minutes=1)
    elif frac is None:
        end = start + timedelta(seconds=1)
    else:
        digits = len(frac) - 1
        end = start + timedelta(microseconds=max(1, 10 ** max(0, 6 - digits)))
    low = start.timestamp()
    return low, end.timestamp() - _EPS


def epoch_to_instant(seconds: float) -> str:
    """An epoch second count as a FHIR instant in UTC."""
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat().replace("+00:00", "Z")


def now_instant() -> str:
    """The current time as a FHIR instant with millisecond precision."""
    return datetime.now(tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
