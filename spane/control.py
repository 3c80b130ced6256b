"""Execution control: pause, resume, replay, rerun, history, dead letters, breakers."""

from __future__ import annotations

from typing import Any

import dramatiq

from . import codec, coordinator, runtime
from .errors import InvalidTransition
from .middleware.circuit_breaker import BreakerStatus
from .store.history import DeadLetter, Event


def pause(execution_id: str) -> None:
    """Pause a running execution: no new node starts; in-flight nodes finish."""
    runtime.get().store.set_paused(execution_id, True)


def resume(execution_id: str) -> None:
    """Resume a paused execution exactly where it stopped."""
    rt = runtime.get()
    coordinator.advance(rt, rt.store.set_paused(execution_id, False))
    rt.ensure_worker()


def replay(execution_id: str, from_node: str | None = None) -> None:
    """Re-run failed or cancelled nodes (or ``from_node``) and everything downstream.

    Completed upstream outputs are kept; the execution moves back to ``running``.
    """
    rt = runtime.get()
    ex = rt.store.summary(execution_id)  # no payloads: a replay must not need to read them
    graph = rt.store.graph(ex.workflow_id, ex.version)
    if from_node is not None:
        if from_node not in graph.nodes:
            raise InvalidTransition(
                f"execution {execution_id} has no node {from_node!r} "
                f"(nodes: {', '.join(graph.order)})"
            )
        if ex.status in ("running", "paused"):
            raise InvalidTransition(
                f"execution {execution_id} is {ex.status}; replay it once it has ended"
            )
    elif ex.status not in ("failed", "cancelled"):
        raise InvalidTransition(
            f"execution {execution_id} is {ex.status}; only a failed or cancelled "
            "execution can be replayed (or name from_node)"
        )
    coordinator.advance(rt, rt.store.revive(execution_id, from_node))
    rt.store.callbacks.rearm(execution_id)  # the execution will end again: post that too
    rt.ensure_worker()


def rerun(execution_id: str) -> str:
    """Start a new execution with the same input, workflow version and tenant."""
    from .api import enqueue_workflow

    ex = runtime.get().store.get_execution(execution_id)
    return enqueue_workflow(ex.workflow_id, ex.input, tenant=ex.tenant, version=ex.version)


def history(execution_id: str) -> list[Event]:
    """Every recorded state change of an execution and its nodes, in order."""
    rt = runtime.get()
    rt.store.execution_status(execution_id)  # raises UnknownExecution
    return rt.store.history(execution_id)


def dead_letters(*, status: str | None = "open", limit: int = 100) -> list[DeadLetter]:
    """Dead letters, newest first (``status=None`` lists retried ones too)."""
    return runtime.get().store.dead_letters(status=status, limit=limit)


def retry_dead_letter(dead_letter_id: int) -> None:
    """Retry a dead letter: a node's execution is revived, a message is sent again."""
    rt = runtime.get()
    letter = rt.store.dead_letter(dead_letter_id)
    if letter.status != "open":
        raise InvalidTransition(f"dead letter {dead_letter_id} was already retried")
    if letter.kind == "node":
        assert letter.execution_id is not None
        status = rt.store.execution_status(letter.execution_id)
        if status in ("running", "paused"):
            raise InvalidTransition(
                f"execution {letter.execution_id} is still {status} (the node failed with "
                "continue_on_fail); retry once it has ended"
            )
        replay(letter.execution_id, from_node=letter.node_id)
    else:
        data: Any = codec.loads(letter.message or "null")
        if not (isinstance(data, dict) and letter.actor and "queue_name" in data):
            raise InvalidTransition(
                f"dead letter {dead_letter_id} holds a message that cannot be decoded; "
                "it can be inspected but not sent again"
            )
        data["args"] = tuple(data.get("args", ()))
        rt.broker.enqueue(dramatiq.Message(**data))
    rt.store.mark_dead_letter_retried(dead_letter_id)


def breakers() -> list[BreakerStatus]:
    """Every circuit breaker the workers declared: state, failures, when it may close."""
    return runtime.get().breakers.status()


def reset_breaker(name: str) -> None:
    """Close the circuit breaker ``name`` now, for every worker.

    Raises:
        UnknownBreaker: If no breaker has that name (``breakers()`` lists them).
    """
    runtime.get().breakers.reset(name)
