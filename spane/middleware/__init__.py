"""Spane's Dramatiq middleware, stated once in the order the stack runs.

Before-hooks run top to bottom, after-hooks unwind bottom to top: ``Drain`` sees a
message first (and refuses it while draining), ``LogContext`` binds identifiers for
everything after it and clears them last; ``Tracing`` makes the sender's trace context
current (so the claim check's blob reads are traced too) and opens each attempt's span
before breakers and rate limits decide on it; ``ClaimCheck`` resolves offloaded
arguments before the actor runs.

Middleware that also subclass ``AttemptMiddleware`` get ``before_attempt`` and
``after_attempt`` around every node attempt, including successors run inline without
a message (see ``attempts.py``). ``CircuitBreaker`` comes before ``RateLimits``: an open
breaker defers a node without spending its share of the rate limit.

``Metrics`` (only with ``SPANE_METRICS_PORT``) comes first so that it sees every
message, including those ``Drain`` turns away, and times the whole stack. ``Heartbeat``
registers the worker once everything else is set up. ``Lanes`` narrows a worker to
``SPANE_LANES`` before its consumers start, so ``Heartbeat`` reports the lanes served.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from dramatiq import Middleware

from ..monitoring import run_folder
from ..settings import Settings
from .attempts import Attempt, AttemptMiddleware, AttemptOutcome, AttemptResult
from .circuit_breaker import CircuitBreaker
from .claim_check import ClaimCheck
from .dead_letters import DeadLetters
from .drain import Drain
from .health import Health
from .heartbeat import Heartbeat
from .lanes import Lanes
from .log_context import LogContext
from .metrics import Metrics
from .rate_limit import RateLimits
from .shared_state import SharedState
from .sweeper import Sweeper
from .tracing import Tracing

if TYPE_CHECKING:
    from ..definitions import Graph
    from ..payloads import Payloads

__all__ = [
    "Attempt",
    "AttemptMiddleware",
    "AttemptOutcome",
    "AttemptResult",
    "CircuitBreaker",
    "ClaimCheck",
    "DeadLetters",
    "Drain",
    "Health",
    "Heartbeat",
    "Lanes",
    "LogContext",
    "Metrics",
    "RateLimits",
    "SharedState",
    "Sweeper",
    "Tracing",
    "default_middleware",
]


def default_middleware(
    settings: Settings,
    shared: SharedState,
    graph: Callable[[str, int], Graph],
    tracing: Tracing,
    payloads: Payloads,
) -> list[Middleware]:
    """Return Spane's middleware for a broker built from ``settings``.

    Args:
        settings: Where the broker and database are, and their limits.
        shared: Where circuit breakers and rate limits keep their shared state.
        graph: Returns the graph of a workflow version (for node declarations).
        tracing: The tracing middleware, built first because the store opens an
            execution's root span through it.
        payloads: Packs message arguments (the claim check).
    """
    metrics: list[Middleware] = []
    if settings.metrics_port:
        metrics.append(Metrics(run_folder(settings), settings.metrics_tenants))
    return [
        *metrics,
        Drain(grace=settings.drain_seconds),
        Lanes(settings),
        Health(max_stuck=settings.max_stuck_threads),
        LogContext(),
        tracing,
        ClaimCheck(payloads),
        DeadLetters(),
        Sweeper(interval=settings.sweep_interval),
        CircuitBreaker(shared, graph),
        RateLimits(shared, graph, settings.namespace),
        Heartbeat(settings),
    ]
