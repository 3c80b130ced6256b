"""Advancing the DAG: what happens after a node attempt ends, whoever saw it end.

The store's guarded transitions say what became ready, skipped or finished (an
``Outcome``); this module is the one place that turns an outcome into messages and
wake-ups. It runs inline in the worker thread that recorded the transition (the
executor may keep one ready successor to run itself, see ``advance``'s ``keep``), and
in the coordinator actor (``actors/coordinator.py``) for timers and child wake-ups.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jmespath
import structlog

from . import registry
from .middleware.attempts import AttemptOutcome, AttemptResult
from .outcomes import backoff, retry_database
from .registry import RetryPolicy

if TYPE_CHECKING:
    from .definitions import Node
    from .services import Services
    from .store import Claim, Dispatch, Execution, Outcome

log = structlog.get_logger("spane.node")
DEFAULT_RETRY = RetryPolicy()


def log_fields(claim: Claim) -> dict[str, Any]:
    """The identifiers every log line of node work carries."""
    return {
        "execution_id": claim.execution_id,
        "workflow_id": claim.workflow_id,
        "node_id": claim.node_id,
        "tenant": claim.tenant,
        "attempt": claim.tries,
    }


def advance(
    services: Services, outcome: Outcome, *, keep: Callable[[Dispatch], bool] | None = None
) -> None:
    """Carry out what a committed transition asks for: send the nodes it made ready
    that admission lets through (but those ``keep`` takes to run inline), count a
    finished execution, wake the parent of a child that ended."""
    dispatches = services.admission.admit(outcome.dispatches)
    if keep is not None:
        dispatches = [d for d in dispatches if not keep(d)]
    services.send(dispatches)
    if outcome.ended and services.metrics is not None:
        services.metrics.execution_finished(outcome.workflow_id, outcome.ended)
    if outcome.ended and outcome.parent_id:
        services.wake(outcome.parent_id, outcome.parent_node_id or "", outcome.child_id)


def record(
    services: Services,
    transition: Callable[[], Outcome],
    *,
    keep: Callable[[Dispatch], bool] | None = None,
) -> Outcome:
    """Run a transition that records an attempt's outcome, then advance from it."""
    outcome = retry_database(transition)
    advance(services, outcome, keep=keep)
    return outcome


def policy_of(node: Node) -> RetryPolicy:
    """The retry policy of a node: its own, else its type's, else the default."""
    node_type = registry.get(node.type)
    return node.retry or (node_type.retry if node_type else None) or DEFAULT_RETRY


def attempt_failed(
    services: Services,
    claim: Claim,
    node: Node,
    policy: RetryPolicy,
    error: str,
    *,
    retryable: bool,
    exc: BaseException | None = None,
    trace: str | None = None,
    keep: Callable[[Dispatch], bool] | None = None,
) -> AttemptResult:
    """Retry a failed attempt after its backoff, or fail the node when the policy is
    spent or the failure is not retryable."""
    store = services.store
    if retryable and claim.tries < policy.max_attempts:
        delay = backoff(policy, claim.tries)
        log.info("node attempt failed; retrying", error=error, retry_in=delay)
        outcome = record(services, lambda: store.retry_node(claim, error, delay, trace=trace))
        if not outcome.applied:
            return AttemptResult(AttemptOutcome.STALE, error, exc)
        return AttemptResult(AttemptOutcome.RETRIED, error, exc, delay)
    log.warning("node failed", error=error, continue_on_fail=node.continue_on_fail)
    outcome = record(
        services,
        lambda: store.fail_node(claim, error, continue_on_fail=node.continue_on_fail, trace=trace),
        keep=keep,
    )
    if not outcome.applied:
        return AttemptResult(AttemptOutcome.STALE, error, exc)
    return AttemptResult(AttemptOutcome.FAILED, error, exc)


def fire_timer(services: Services, execution_id: str, node_id: str, attempt: int) -> bool:
    """A parked node's time came: complete it and advance; False if it was not due."""
    outcome = services.store.fire_timer(execution_id, node_id, attempt)
    advance(services, outcome)
    return outcome.applied


def fire_due_timers(services: Services) -> int:
    """Fire every timer that fell due (the sweep's backstop); return how many fired."""
    due = services.store.due_timers(time.time())
    return sum(fire_timer(services, *timer) for timer in due)


def wake_parent(services: Services, execution_id: str, node_id: str, child_id: str) -> None:
    """A child execution ended: complete, retry or fail the parent node parked on it."""
    store = services.store
    claim = store.waiting_claim(execution_id, node_id, child_id)
    if claim is None:
        return  # woken already, moved on, ended, or paused (the sweep wakes it on resume)
    child = store.get_execution(child_id)
    if not child.done:
        return  # a forged or confused wake-up: the child's own end wakes the parent
    node = store.graph(claim.workflow_id, claim.version).nodes[node_id]
    with structlog.contextvars.bound_contextvars(**log_fields(claim)):
        _wake(services, claim, node, child)


def _wake(services: Services, claim: Claim, node: Node, child: Execution) -> None:
    store = services.store
    if child.status == "completed":
        mapping = node.config.get("output")
        if not mapping:
            # Passed on as stored: a large output composed from references is not
            # encoded whole again for the parent.
            stored = store.stored_output(child.id)
            advance(services, store.complete_node(claim, child.output, stored=stored))
            return
        try:
            output = jmespath.search(mapping, child.output)
        except Exception as exc:
            error = f"output mapping {mapping!r} failed on the child's output: {exc}"
            advance(services, store.fail_node(claim, error, continue_on_fail=False))
            return
        advance(services, store.complete_node(claim, output))
        return
    reason = f"child execution {child.id} {child.status}: {child.error}"
    retryable = child.status == "failed"
    attempt_failed(services, claim, node, policy_of(node), reason, retryable=retryable)


def on_event(
    services: Services,
    execution_id: str,
    event: str,
    node_id: str = "",
    attempt: int = 0,
    child_id: str = "",
) -> None:
    """What the coordinator actor does with its message: a timer or a child's end."""
    if event == "timer":
        fire_timer(services, execution_id, node_id, attempt)
    elif event == "child_ended":
        wake_parent(services, execution_id, node_id, child_id)
