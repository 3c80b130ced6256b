"""When a schedule ticks: cron expressions (cronsim) in a timezone, or a fixed interval.

Ticks are whole milliseconds since the epoch, computed the same way by every worker, so
the row that records a tick is the same row whoever fires it. Daylight-saving time
follows cron's usual rules (cronsim, like Debian cron): a local time skipped when
clocks go forward fires at the first valid time after the gap; a daily time in the hour
repeated when clocks go back fires once, on its first pass; expressions with an hour
wildcard fire in both passes of the repeated hour.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from .durations import parse_duration

#: The shortest interval a schedule may tick at.
MIN_EVERY = 1.0


def check_cron(expression: str) -> None:
    """Raise ValueError, saying what is wrong, unless ``expression`` is a 5-field cron."""
    if len(expression.split()) != 5:
        raise ValueError(f"expected 5 cron fields (minute hour day month weekday): {expression!r}")
    try:
        CronSim(expression, datetime.now(ZoneInfo("UTC")))
    except CronSimError as exc:
        raise ValueError(f"cron {expression!r} is invalid: {exc}") from None


def check_timezone(name: str) -> ZoneInfo:
    """Return the timezone called ``name`` (IANA, e.g. ``Europe/Paris``).

    Raises:
        ValueError: If no such timezone exists.
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown timezone {name!r}; use an IANA name such as 'UTC' or 'Europe/Paris'"
        ) from None


def check_every(value: str | float) -> float:
    """Return an interval in seconds, at least ``MIN_EVERY``.

    Raises:
        ValueError: If it is not a duration or is too short.
    """
    seconds = parse_duration(value)
    if seconds < MIN_EVERY:
        raise ValueError(f"every {value!r} is shorter than the minimum of {MIN_EVERY:g}s")
    return seconds


def ticks_after(
    after_ms: int, *, cron: str | None, every: float | None, timezone: str
) -> Iterator[int]:
    """Yield the ticks strictly after ``after_ms``, in order (milliseconds since the epoch).

    Interval ticks are multiples of the interval since the epoch, so they fall on the
    same instants whichever worker computes them and whenever the schedule was made.
    """
    if every is not None:
        step = max(1, round(every * 1000))
        tick = (after_ms // step + 1) * step
        while True:
            yield tick
            tick += step
    assert cron is not None  # a schedule has exactly one of cron and every
    start = datetime.fromtimestamp(after_ms / 1000, check_timezone(timezone))
    for moment in CronSim(cron, start):
        yield round(moment.timestamp() * 1000)
