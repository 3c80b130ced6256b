"""Hooks around every node attempt, however the attempt was dispatched.

Dramatiq's message hooks see messages only, and a ready successor that a worker thread
runs inline never becomes a message. So a Spane middleware may also be an
``AttemptMiddleware``: the executor calls its ``before_attempt`` right after an attempt
is claimed and its ``after_attempt`` once the attempt's outcome is recorded, for message
and inline attempts alike. Before-hooks run in stack order and after-hooks unwind in
reverse, as Dramatiq's do; tracing, metrics and circuit breakers plug in here without
edits to the executor. A before-hook may raise ``Defer`` (an open breaker, a rate limit):
the attempt does not run, the node goes back to the queue until then, uncounted, and the
after-hooks of the hooks that ran see the outcome ``DEFERRED``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import structlog
from dramatiq import Broker, Middleware

from ..context import Defer

log = structlog.get_logger("spane.middleware")


class AttemptOutcome(StrEnum):
    """How one attempt ended, as recorded in the database."""

    COMPLETED = "completed"
    FAILED = "failed"
    RETRIED = "retried"
    TIMED_OUT = "timed_out"
    PARKED = "parked"
    HANDED_BACK = "handed_back"
    DEFERRED = "deferred"
    #: The attempt was superseded (its lease ran out) before it recorded its result.
    STALE = "stale"


@dataclass
class Attempt:
    """One claimed node attempt, as the attempt hooks see it.

    Attributes:
        inline: True when the thread ran it straight after its parent, without a message.
        traceparent: W3C traceparent of the execution's root span, if it has one.
        ready_at: When the attempt became due (epoch seconds): queued, or its retry
            delay over. Claimed at ``ready_at`` plus the time it waited in the queue.
        first: True for the first attempt of the execution's first node, the moment
            the execution starts running on a worker.
        state: Scratch space for middleware to carry values from before- to after-hook.
    """

    execution_id: str
    workflow_id: str
    version: int
    node_id: str
    node_type: str
    lane: str
    tenant: str
    attempt: int
    config: Any
    inline: bool
    traceparent: str | None = None
    ready_at: float = 0.0
    first: bool = False
    started: float = field(default_factory=time.monotonic)
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def elapsed(self) -> float:
        """Seconds since the attempt was claimed."""
        return time.monotonic() - self.started


@dataclass(frozen=True)
class AttemptResult:
    """What became of an attempt: its outcome and, for failures, why."""

    outcome: AttemptOutcome
    error: str | None = None
    exception: BaseException | None = None
    #: For a retry, seconds until the next attempt.
    retry_in: float | None = None
    #: For a node parked on a durable timer, the epoch second it fires.
    wake_at: float | None = None


class AttemptMiddleware(Middleware):
    """A Dramatiq middleware that also sees every node attempt."""

    def before_attempt(self, broker: Broker, attempt: Attempt) -> None:
        """Called after the attempt is claimed, before its node code runs."""

    def after_attempt(self, broker: Broker, attempt: Attempt, result: AttemptResult) -> None:
        """Called after the attempt's outcome is recorded, whatever it was."""


def attempt_middleware(broker: Broker) -> list[AttemptMiddleware]:
    """Return the broker's attempt middleware, in stack order."""
    return [m for m in broker.middleware if isinstance(m, AttemptMiddleware)]


def emit_before(
    broker: Broker, hooks: list[AttemptMiddleware], attempt: Attempt
) -> tuple[list[AttemptMiddleware], Defer | None]:
    """Run the before-hooks; a failing hook is logged and never fails the attempt.

    A hook that raises ``Defer`` stops the hooks after it: the attempt is deferred, not
    run. Returns the hooks whose before-hook ran (their after-hooks run too) and the
    ``Defer``, if any.
    """
    for index, hook in enumerate(hooks):
        try:
            hook.before_attempt(broker, attempt)
        except Defer as defer:
            return hooks[: index + 1], defer
        except Exception:
            log.exception("attempt middleware failed", hook=type(hook).__name__, at="before")
    return hooks, None


def emit_after(
    broker: Broker, hooks: list[AttemptMiddleware], attempt: Attempt, result: AttemptResult
) -> None:
    """Run the after-hooks in reverse; a failing hook is logged and never fails the attempt."""
    for hook in reversed(hooks):
        try:
            hook.after_attempt(broker, attempt, result)
        except Exception:
            log.exception("attempt middleware failed", hook=type(hook).__name__, at="after")
