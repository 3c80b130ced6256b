"""Durations such as ``500ms``, ``30s``, ``10m``, ``1h``, ``2d`` (or plain seconds)."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*")


def parse_duration(value: str | float | int) -> float:
    """Return the duration in seconds.

    Raises:
        ValueError: If the value is negative or not a duration; the message says the format.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '30s', got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"a duration must be a finite number of seconds, got {value!r}")
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value!r}")
        return float(value)
    parts = _PATTERN.findall(value) if isinstance(value, str) else []
    if not parts or "".join(f"{n}{u}" for n, u in parts) != re.sub(r"\s+", "", value):
        raise ValueError(
            f"expected a duration like '500ms', '30s', '10m', '1h' or '2d', got {value!r}"
        )
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not math.isfinite(seconds):
        raise ValueError(f"a duration must be a finite number of seconds, got {value!r}")
    return seconds
