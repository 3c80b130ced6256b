"""Spane's Dramatiq middleware, stated once in the order the stack runs.

Before-hooks run top to bottom, after-hooks unwind bottom to top.
"""

from __future__ import annotations

from dramatiq import Middleware

from ..settings import Settings
from .log_context import LogContext
from .timers import Timers

__all__ = ["LogContext", "Timers", "default_middleware"]


def default_middleware(settings: Settings) -> list[Middleware]:
    """Return Spane's middleware for a broker built from ``settings``."""
    return [
        LogContext(),
        Timers(interval=settings.sweep_interval),
    ]
