"""FHIRPath lowBoundary()/highBoundary() (FHIRPath 3.0 §5.8) for decimals, dates, dateTimes and times.

fhirpathpy 2.2 lacks both; the compiled path and the fhirpathpy fallback call these same functions so the two
modes agree. Only the no-argument form is implemented: the boundary at the greatest precision of the type.
"""

from __future__ import annotations

import calendar
import re
from decimal import Decimal
from typing import Any

from fhirgate.analytics.sof.elements import DECIMAL_TYPES, INTEGER_TYPES

_DATE_RE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_TIME_RE = re.compile(r"^(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?$")
_TZ_RE = re.compile(r"(Z|[+-]\d{2}:\d{2})$")
# FHIRPath §5.8: a dateTime without a time zone spans every zone, from +14:00 (earliest) to -12:00 (latest).
_LOW_TZ = "+14:00"
_HIGH_TZ = "-12:00"


def boundary(value: Any, type_name: str, high: bool) -> Any:
    """The low or high boundary of one value of FHIR type `type_name`, or None when it has none."""
    if isinstance(value, bool):
        return None
    if type_name in DECIMAL_TYPES or type_name in INTEGER_TYPES:
        if isinstance(value, int | float | Decimal):
            return _number(value, high)
        return None
    if not isinstance(value, str):
        return None
    if type_name in ("date", "System.Date"):
        return _date(value, high)
    if type_name in ("dateTime", "instant", "System.DateTime"):
        return _datetime(value, high)
    if type_name in ("time", "System.Time"):
        return _time(value, high)
    return None


def _number(value: int | float | Decimal, high: bool) -> float:
    """Half a unit in the last place of the written value: 1.0 → 0.95 / 1.05."""
    dec = value if isinstance(value, Decimal) else Decimal(repr(value) if isinstance(value, float) else value)
    exponent = dec.as_tuple().exponent
    digits = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    half = Decimal(5).scaleb(-(digits + 1))
    return float(dec + half if high else dec - half)


def _date(value: str, high: bool) -> str | None:
    match = _DATE_RE.match(value)
    if not match:
        return None
    year = int(match.group(1))
    month = int(match.group(2)) if match.group(2) else (12 if high else 1)
    last = calendar.monthrange(year, month)[1] if high else 1
    day = int(match.group(3)) if match.group(3) else last
    return f"{year:04d}-{month:02d}-{day:02d}"


def _time(value: str, high: bool) -> str | None:
    match = _TIME_RE.match(value)
    if not match:
        return None
    hour = match.group(1)
    minute = match.group(2) or ("59" if high else "00")
    second = match.group(3) or ("59" if high else "00")
    fraction = match.group(4) or ""
    if len(fraction) < 3:
        fraction = fraction + ("9" if high else "0") * (3 - len(fraction))
    return f"{hour}:{minute}:{second}.{fraction}"


def _datetime(value: str, high: bool) -> str | None:
    date_part, _, time_part = value.partition("T")
    tz_match = _TZ_RE.search(time_part) if time_part else None
    tz = tz_match.group(1) if tz_match else (_HIGH_TZ if high else _LOW_TZ)
    if tz_match:
        time_part = time_part[: tz_match.start()]
    day = _date(date_part, high)
    clock = _time(time_part, high) if time_part else ("23:59:59.999" if high else "00:00:00.000")
    if day is None or clock is None:
        return None
    return f"{day}T{clock}{tz}"
