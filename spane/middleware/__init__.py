"""Spane's Dramatiq middleware, stated once in the order the stack runs (``Stack``;
the runtime builds each with what it needs, so none is completed after the fact).

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

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dramatiq import Middleware

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
    "Stack",
    "Sweeper",
    "Tracing",
    "sending_middleware",
]


@dataclass(frozen=True)
class Stack:
    """Spane's middleware of a worker process, each built with what it needs, named so
    the runtime holds the ones it asks (drain, health, breakers, metrics) directly.

    The fields are in the order the stack runs (``in_order``).
    """

    metrics: Metrics | None
    drain: Drain
    lanes: Lanes
    health: Health
    log_context: LogContext
    tracing: Tracing
    claim_check: ClaimCheck
    dead_letters: DeadLetters
    sweeper: Sweeper
    breakers: CircuitBreaker
    rate_limits: RateLimits
    heartbeat: Heartbeat

    def in_order(self) -> list[Middleware]:
        """The middleware as the broker takes them: before-hooks run in this order."""
        first = [self.metrics] if self.metrics is not None else []
        return [
            *first,
            self.drain,
            self.lanes,
            self.health,
            self.log_context,
            self.tracing,
            self.claim_check,
            self.dead_letters,
            self.sweeper,
            self.breakers,
            self.rate_limits,
            self.heartbeat,
        ]


def sending_middleware(payloads: Payloads, tracing: Tracing) -> list[Middleware]:
    """The middleware of a process that only sends messages (it runs no actor): the
    sender's trace context goes along, and large arguments travel as blob references."""
    return [tracing, ClaimCheck(payloads)]
