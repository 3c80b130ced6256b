"""Spane's Dramatiq middleware, stated once in the order the stack runs.

Before-hooks run top to bottom, after-hooks unwind bottom to top: ``Drain`` sees a
message first (and refuses it while draining), ``LogContext`` binds identifiers for
everything after it and clears them last; ``Tracing`` makes the sender's trace context
current (so the claim check's blob reads are traced too) and, among the attempt hooks,
opens each attempt's span first and closes it last; ``ClaimCheck`` resolves offloaded
arguments before the actor runs.

Middleware that also subclass ``AttemptMiddleware`` get ``before_attempt`` and
``after_attempt`` around every node attempt, including successors run inline without
a message (see ``attempts.py``).
"""

from __future__ import annotations

from dramatiq import Middleware

from ..settings import Settings
from .attempts import Attempt, AttemptMiddleware, AttemptOutcome, AttemptResult
from .claim_check import ClaimCheck
from .dead_letters import DeadLetters
from .drain import Drain
from .log_context import LogContext
from .sweeper import Sweeper
from .tracing import Tracing

__all__ = [
    "Attempt",
    "AttemptMiddleware",
    "AttemptOutcome",
    "AttemptResult",
    "ClaimCheck",
    "DeadLetters",
    "Drain",
    "LogContext",
    "Sweeper",
    "Tracing",
    "default_middleware",
]


def default_middleware(settings: Settings) -> list[Middleware]:
    """Return Spane's middleware for a broker built from ``settings``."""
    return [
        Drain(grace=settings.drain_seconds),
        LogContext(),
        Tracing.from_settings(settings),
        ClaimCheck(threshold=settings.claim_check_bytes, max_bytes=settings.max_payload_bytes),
        DeadLetters(),
        Sweeper(interval=settings.sweep_interval),
    ]
