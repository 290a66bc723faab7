"""Interval texts as PostgreSQL and TimescaleDB understand them, compared without a database.

``diff`` runs without a connection, yet must tell "1 day" from "24:00:00"
(the same) and "1 year" from "360 days" (not the same for a policy).
"""

from __future__ import annotations

import re

_DAY_MICROS = 86_400_000_000
# PostgreSQL keeps an interval as (months, days, microseconds).  Months stay a
# field of their own: "1 year" and "360 days" compare equal with `=`, but a
# policy subtracts its window from now() with calendar arithmetic.
_UNIT_MONTHS = {"month": 1, "year": 12, "decade": 120}
_UNIT_MICROS = {
    "microsecond": 1,
    "millisecond": 1_000,
    "second": 1_000_000,
    "minute": 60_000_000,
    "hour": 3_600_000_000,
    "day": _DAY_MICROS,
    "week": 7 * _DAY_MICROS,
}
# PostgreSQL compares intervals with a month of 30 days and a day of 24 hours
# (interval_cmp_value); TimescaleDB turns a chunk interval into microseconds the same way.
_MONTH_MICROS = 30 * _DAY_MICROS
_UNIT_ALIASES = {
    "us": "microsecond",
    "usec": "microsecond",
    "usecs": "microsecond",
    "microseconds": "microsecond",
    "microsecon": "microsecond",
    "ms": "millisecond",
    "msec": "millisecond",
    "msecs": "millisecond",
    "milliseconds": "millisecond",
    "millisecon": "millisecond",
    "s": "second",
    "sec": "second",
    "secs": "second",
    "seconds": "second",
    "m": "minute",
    "min": "minute",
    "mins": "minute",
    "minutes": "minute",
    "h": "hour",
    "hr": "hour",
    "hrs": "hour",
    "hours": "hour",
    "d": "day",
    "days": "day",
    "w": "week",
    "weeks": "week",
    "mon": "month",
    "mons": "month",
    "months": "month",
    "y": "year",
    "yr": "year",
    "yrs": "year",
    "years": "year",
    "decades": "decade",
    "dec": "decade",
    "decs": "decade",
}
_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<clock>[+-]?\d+:\d{1,2}(?::\d{1,2}(?:\.\d+)?)?)"
    r"|(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(?P<unit>[a-z]+)"
    r")\s*"
)


def interval_parts(text: str) -> tuple[int, int]:
    """``(months, microseconds)`` of a PostgreSQL interval literal; days count as 24 hours.

    Accepts the forms PostgreSQL prints and the usual ones people write:
    ``1 day``, ``24:00:00``, ``1 days``, ``1d``, ``2 hours 30 minutes``,
    ``1 year 2 mons 3 days 04:05:06``, ``@ 7 days ago``.  Raises ``ValueError``
    for anything else (ISO 8601 ``P1D`` included) rather than guessing.
    Fractions follow PostgreSQL's input rules: a fraction of a year or decade
    is rounded to whole months, a fraction of a month becomes 30-day days.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{text!r} is not an interval")
    body = text.strip().lower()
    sign = 1
    body = body.removeprefix("@")
    if body.endswith(" ago"):
        body, sign = body[: -len(" ago")], -1
    months, micros, position, seen = 0, 0, 0, False
    while position < len(body):
        match = _TOKEN.match(body, position)
        if not match or match.end() == position:
            raise ValueError(f"{text!r} is not an interval PostgreSQL and this provider both understand")
        position, seen = match.end(), True
        if match.group("clock"):
            clock = match.group("clock")
            negative = clock.startswith("-")
            parts = clock.lstrip("+-").split(":")
            hours, minutes = int(parts[0]), int(parts[1])
            seconds = float(parts[2]) if len(parts) > 2 else 0.0
            clock_micros = hours * 3_600_000_000 + minutes * 60_000_000 + round(seconds * 1_000_000)
            micros += -clock_micros if negative else clock_micros
            continue
        unit = match.group("unit")
        unit = _UNIT_ALIASES.get(unit, unit)
        number = float(match.group("number"))
        if unit == "month":
            whole = int(number)
            months += whole
            micros += round((number - whole) * _MONTH_MICROS)
        elif unit in _UNIT_MONTHS:
            months += round(number * _UNIT_MONTHS[unit])
        elif unit in _UNIT_MICROS:
            micros += round(number * _UNIT_MICROS[unit])
        else:
            raise ValueError(f"{text!r}: unknown interval unit {match.group('unit')!r}")
    if not seen:
        raise ValueError(f"{text!r} is not an interval")
    return sign * months, sign * micros


def interval_micros(text: str) -> int:
    """Microseconds of a PostgreSQL interval literal, compared the way PostgreSQL compares them.

    A month counts as 30 days (see :func:`interval_parts` for the accepted forms).
    """
    months, micros = interval_parts(text)
    return months * _MONTH_MICROS + micros


def same_interval(left: str | None, right: str | None) -> bool:
    """Whether two optional interval texts mean the same span ("1 day" == "24:00:00").

    PostgreSQL's ``=``, and what a chunk interval becomes: TimescaleDB stores it
    in microseconds, a month as 30 days.
    """
    if left is None or right is None:
        return left is None and right is None
    try:
        return interval_micros(left) == interval_micros(right)
    except ValueError:
        return left.strip() == right.strip()


def same_window(left: str | None, right: str | None) -> bool:
    """Whether two optional policy windows drop or compress the same chunks.

    A policy computes ``now() - window`` with calendar arithmetic, so months
    must match on their own: "1 year" is "12 months" but not "360 days".
    Days count as 24 hours, as they do in a database whose TimeZone has no
    daylight saving time (the timescale/timescaledb image runs in UTC).
    """
    if left is None or right is None:
        return left is None and right is None
    try:
        return interval_parts(left) == interval_parts(right)
    except ValueError:
        return left.strip() == right.strip()
