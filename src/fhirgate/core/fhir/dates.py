"""FHIR date, dateTime and instant values as inclusive epoch-second ranges (FHIR R4 §2.24.0.1, §3.1.1.4.5)."""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta

_DATE_RE = re.compile(
    r"^(?P<y>[0-9]{4})(?:-(?P<m>[0-9]{2})(?:-(?P<d>[0-9]{2})"
    r"(?:T(?P<H>[0-9]{2})(?::(?P<M>[0-9]{2})(?::(?P<S>[0-9]{2})(?P<f>\.[0-9]+)?)?)?"
    r"(?P<tz>Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?$"
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
    try:
        end = _range_end(start, g, year, month, frac)
    except OverflowError:  # 9999-12-31 and the like: the range runs to the end of representable time
        end = datetime.max.replace(tzinfo=UTC)
    # The zone offset is applied in seconds, so instants just outside datetime's range (0001-01-01T00:00+05:30)
    # still have a value.
    shift = 0.0
    tz = g["tz"]
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        shift = sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return start.timestamp() - shift, end.timestamp() - shift - _EPS


def _range_end(start: datetime, g: dict[str, str | None], year: int, month: int, frac: str | None) -> datetime:
    """The exclusive end of the interval a value of the given precision denotes."""
    if g["m"] is None:
        return start.replace(year=year + 1) if year < 9999 else datetime.max.replace(tzinfo=UTC)
    if g["d"] is None:
        return start + timedelta(days=calendar.monthrange(year, month)[1])
    if g["H"] is None:
        return start + timedelta(days=1)
    if g["S"] is None:
        return start + timedelta(minutes=1)
    if frac is None:
        return start + timedelta(seconds=1)
    return start + timedelta(microseconds=max(1, 10 ** max(0, 6 - (len(frac) - 1))))


def epoch_to_instant(seconds: float) -> str:
    """An epoch second count as a FHIR instant in UTC."""
    limit = datetime.max.replace(tzinfo=UTC).timestamp() - 1
    return datetime.fromtimestamp(min(seconds, limit), tz=UTC).isoformat().replace("+00:00", "Z")


def now_instant() -> str:
    """The current time as a FHIR instant with millisecond precision."""
    return datetime.now(tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
