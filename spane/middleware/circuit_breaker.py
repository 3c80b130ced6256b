"""``CircuitBreaker``: stop calling a failing service, for every worker at once.

pybreaker keeps each breaker's state machine; its storage is shared by all workers
(``shared_state.py``). Around every attempt of a node that has a ``Breaker`` declared:

- closed: the attempt runs, and its outcome is replayed through pybreaker, which counts
  failures and opens the breaker after ``fail_max`` of them in a row;
- open: the attempt is deferred until the reset timeout ends (``Defer``: no attempt is
  spent, no thread waits);
- after the reset timeout: one attempt, cluster-wide, takes the trial and runs (the breaker
  is half-open); the others are deferred a little. The trial's success closes the breaker,
  its failure opens it again.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pybreaker
import structlog
from dramatiq import Broker

from .. import registry
from ..context import Defer
from ..errors import UnknownBreaker
from ..protection import Breaker, protected_name
from .attempts import Attempt, AttemptMiddleware, AttemptOutcome, AttemptResult

if TYPE_CHECKING:
    from ..definitions import Graph
    from .shared_state import SharedState

log = structlog.get_logger("spane.breakers")

#: Seconds before a node held back by another attempt's trial looks again.
TRIAL_RECHECK = 1.0
_STATE_KEY = "circuit_breaker"
Storage = pybreaker.CircuitBreakerStorage
_SUCCEEDED = (AttemptOutcome.COMPLETED, AttemptOutcome.PARKED)
_FAILED = (AttemptOutcome.RETRIED, AttemptOutcome.FAILED, AttemptOutcome.TIMED_OUT)


@dataclass(frozen=True)
class BreakerStatus:
    """One breaker as operators see it (``spane breakers``).

    Attributes:
        name: ``node_type`` or ``node_type:key``, e.g. ``http:api.example.com``.
        state: ``closed``, ``open`` or ``half-open``.
        failures: Consecutive counted failures so far.
        fail_max: Failures that open it.
        reset_timeout: Seconds it stays open before a trial.
        opened_at: When it last opened (epoch seconds), if ever.
        closes_at: While open, when a trial may run and close it.
    """

    name: str
    state: str
    failures: int
    fail_max: int
    reset_timeout: float
    opened_at: float | None
    closes_at: float | None


def name_for(attempt: Attempt, key: str | None) -> str:
    """The breaker (or rate limit) name of an attempt: its node type, and the key's value."""
    subject = {
        "config": attempt.config,
        "tenant": attempt.tenant,
        "workflow_id": attempt.workflow_id,
        "node_id": attempt.node_id,
    }
    return protected_name(attempt.node_type, key, subject)


class _Failed(Exception):
    """An attempt's counted failure, replayed through pybreaker."""


def _fail() -> None:
    raise _Failed


def _succeed() -> None:
    return None


class CircuitBreaker(AttemptMiddleware):
    """Defers the nodes of an open breaker; feeds attempt outcomes to pybreaker.

    Args:
        shared: Where breaker state lives (Redis, the database, or memory).
        graph: Returns the graph of a workflow version (node declarations win over types).
    """

    def __init__(self, shared: SharedState, graph: Callable[[str, int], Graph]) -> None:
        self.shared = shared
        self._graph = graph
        self._lock = threading.Lock()
        self._breakers: dict[str, tuple[pybreaker.CircuitBreaker, Storage]] = {}
        self._declared: dict[str, tuple[int, float]] = {}

    # -- attempts --------------------------------------------------------------------

    def before_attempt(self, broker: Broker, attempt: Attempt) -> None:
        spec = self._spec(attempt)
        if spec is None:
            return
        name = name_for(attempt, spec.key)
        breaker, storage = self._breaker(name, spec)
        state, now = breaker.current_state, time.time()
        if state == pybreaker.STATE_OPEN:
            opened = storage.opened_at
            until = opened.timestamp() + spec.reset_seconds if opened else now
            if now < until:
                raise Defer(until, f"circuit breaker {name} is open")
        trial = state != pybreaker.STATE_CLOSED
        if trial:
            if not self.shared.take_trial(name, spec.reset_seconds):
                wait = min(TRIAL_RECHECK, spec.reset_seconds)
                raise Defer(now + wait, f"circuit breaker {name} is half-open; a trial is running")
            if breaker.current_state == pybreaker.STATE_OPEN:
                breaker.half_open()
                log.info("circuit breaker half-open: one trial attempt runs", breaker=name)
        attempt.state[_STATE_KEY] = (name, trial, spec)

    def after_attempt(self, broker: Broker, attempt: Attempt, result: AttemptResult) -> None:
        entry = attempt.state.get(_STATE_KEY)
        if entry is None:
            return
        name, trial, spec = entry
        try:
            if result.outcome in _SUCCEEDED:
                self._record(name, failed=False)
            elif result.outcome in _FAILED and result.exception is not None:
                self._record(name, failed=spec.counts(result.exception))
        finally:
            if trial:
                self.shared.end_trial(name)

    def _record(self, name: str, *, failed: bool) -> None:
        breaker, storage = self._breakers[name]
        before = breaker.current_state
        # Counted; or the breaker is open already and the outcome changes nothing.
        with contextlib.suppress(_Failed, pybreaker.CircuitBreakerError):
            breaker.call(_fail if failed else _succeed)
        after = breaker.current_state
        if after == before:
            return
        if after == pybreaker.STATE_OPEN:
            opened = storage.opened_at
            closes = opened.timestamp() + breaker.reset_timeout if opened else None
            log.warning(
                "circuit breaker opened: its nodes are deferred",
                breaker=name,
                failures=breaker.fail_counter,
                closes_at=closes,
            )
        elif after == pybreaker.STATE_CLOSED:
            log.info("circuit breaker closed", breaker=name)

    # -- breakers --------------------------------------------------------------------

    def _spec(self, attempt: Attempt) -> Breaker | None:
        node = self._graph(attempt.workflow_id, attempt.version).nodes[attempt.node_id]
        node_type = registry.get(attempt.node_type)
        return node.breaker or (node_type.breaker if node_type else None)

    def _breaker(
        self, name: str, spec: Breaker | None = None
    ) -> tuple[pybreaker.CircuitBreaker, Storage]:
        """The pybreaker breaker ``name`` of this process, declared with ``spec``."""
        with self._lock:
            if spec is not None:
                settings = (spec.fail_max, spec.reset_seconds)
                if self._declared.get(name) != settings:
                    self.shared.declare(name, *settings)
                    self._declared[name] = settings
            else:
                known = self.shared.declared().get(name) or self._declared.get(name)
                if known is None:
                    raise UnknownBreaker(
                        f"no circuit breaker is called {name!r}; `spane breakers` lists them"
                    )
                settings = known
            entry = self._breakers.get(name)
            if entry is None:
                storage = self.shared.breaker_storage(name)
                entry = (pybreaker.CircuitBreaker(name=name, state_storage=storage), storage)
                self._breakers[name] = entry
            entry[0].fail_max, entry[0].reset_timeout = settings
            return entry

    def status(self) -> list[BreakerStatus]:
        """Every breaker any worker declared, with its shared state (for the CLI, metrics)."""
        found = []
        for name, (fail_max, reset_timeout) in sorted(self.shared.declared().items()):
            storage = self.shared.breaker_storage(name)
            state = storage.state
            opened = storage.opened_at
            opened_at = opened.timestamp() if opened else None
            found.append(
                BreakerStatus(
                    name=name,
                    state=state,
                    failures=storage.counter,
                    fail_max=fail_max,
                    reset_timeout=reset_timeout,
                    opened_at=opened_at,
                    closes_at=(
                        opened_at + reset_timeout
                        if state == pybreaker.STATE_OPEN and opened_at is not None
                        else None
                    ),
                )
            )
        return found

    def reset(self, name: str) -> None:
        """Close the breaker ``name`` for every worker now.

        Raises:
            UnknownBreaker: If no worker ever declared a breaker of that name.
        """
        breaker, _ = self._breaker(name)
        before = breaker.current_state
        breaker.close()
        self.shared.end_trial(name)
        log.info("circuit breaker reset by an operator", breaker=name, was=before)
