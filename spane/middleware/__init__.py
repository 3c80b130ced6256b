"""Spane's Dramatiq middleware, stated once in the order the stack runs.

Before-hooks run top to bottom, after-hooks unwind bottom to top: ``Drain`` sees a
message first (and refuses it while draining), ``LogContext`` binds identifiers for
everything after it and clears them last; ``ClaimCheck`` resolves offloaded arguments
before the actor runs.

Middleware that also subclass ``AttemptMiddleware`` get ``before_attempt`` and
``after_attempt`` around every node attempt, including successors run inline without
a message (see ``attempts.py``).

``Metrics`` (only with ``SPANE_METRICS_PORT``) comes first so that it sees every
message, including those ``Drain`` turns away, and times the whole stack. ``Heartbeat``
registers the worker once everything else is set up.
"""

from __future__ import annotations

from dramatiq import Middleware

from ..monitoring import run_folder
from ..settings import Settings
from .attempts import Attempt, AttemptMiddleware, AttemptOutcome, AttemptResult
from .claim_check import ClaimCheck
from .dead_letters import DeadLetters
from .drain import Drain
from .heartbeat import Heartbeat
from .log_context import LogContext
from .metrics import Metrics
from .sweeper import Sweeper

__all__ = [
    "Attempt",
    "AttemptMiddleware",
    "AttemptOutcome",
    "AttemptResult",
    "ClaimCheck",
    "DeadLetters",
    "Drain",
    "Heartbeat",
    "LogContext",
    "Metrics",
    "Sweeper",
    "default_middleware",
]


def default_middleware(settings: Settings) -> list[Middleware]:
    """Return Spane's middleware for a broker built from ``settings``."""
    metrics: list[Middleware] = []
    if settings.metrics_port:
        metrics.append(Metrics(run_folder(settings), settings.metrics_tenants))
    return [
        *metrics,
        Drain(grace=settings.drain_seconds),
        LogContext(),
        ClaimCheck(threshold=settings.claim_check_bytes, max_bytes=settings.max_payload_bytes),
        DeadLetters(),
        Sweeper(interval=settings.sweep_interval),
        Heartbeat(settings),
    ]
