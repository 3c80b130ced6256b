"""What node code receives (``NodeContext``), may return (``Route``; built-ins also
``Park``, ``Spawn``, ``AwaitSignal``) and may raise (``Defer``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog
from opentelemetry import trace


@dataclass(frozen=True)
class NodeContext:
    """Everything a node attempt knows about itself.

    Attributes:
        input: The node's input (execution input, parent output or ``{parent: output}``).
        config: The node's config, decoded into the node type's config struct if it has one.
        execution_id: The execution this attempt belongs to.
        workflow_id: The workflow being run.
        node_id: The node's id in the definition.
        attempt: 1 for the first attempt, 2 for the first retry, ...
        tenant: The tenant the execution runs for.
        log: A structlog logger bound to this attempt.
        span: The attempt's OpenTelemetry span (a non-recording one when tracing is
            off), current while node code runs: set attributes and events on it, or
            open child spans with any tracer.
    """

    input: Any
    config: Any
    execution_id: str
    workflow_id: str
    node_id: str
    attempt: int
    tenant: str
    log: Any = field(default_factory=structlog.get_logger)
    span: trace.Span = field(default_factory=trace.get_current_span)

    @property
    def idempotency_key(self) -> str:
        """Stable per execution and node, across attempts and redeliveries."""
        return f"{self.execution_id}:{self.node_id}"


@dataclass(frozen=True)
class Route:
    """Return value that runs only the named direct successors; the others are skipped.

    Args:
        next: Ids of direct successors to run.
        output: The node's output.
    """

    next: list[str]
    output: Any = None


@dataclass(frozen=True)
class Park:
    """Return value (built-in node types only) that parks the node in ``waiting``.

    Args:
        until: Epoch seconds at which a durable timer completes the node.
        output: The output recorded when the timer fires.
    """

    until: float
    output: Any = None


@dataclass(frozen=True)
class Spawn:
    """Return value (built-in ``subworkflow`` only): run a child execution, parked.

    Args:
        workflow: The child workflow's id.
        version: The child's version (None: the latest).
        input: The child execution's input.
        output: JMESPath applied to the child's output to make this node's output.
    """

    workflow: str
    version: int | None
    input: Any
    output: str | None = None


@dataclass(frozen=True)
class AwaitSignal:
    """Return value (built-in ``wait_for`` only): park the node until a signal arrives.

    Args:
        name: The signal's name.
        until: Epoch seconds after which the wait times out (None: never).
        on_timeout: ``fail`` the node, or ``continue`` with ``default`` as its output.
        default: The output when the wait times out with ``continue``.
    """

    name: str
    until: float | None = None
    on_timeout: str = "fail"
    default: Any = None


class Defer(Exception):
    """Raised to put a claimed attempt back in the queue until ``until``, uncounted.

    Raised by attempt middleware (an open circuit breaker, a rate limit) or by node code
    (an HTTP 429 with ``Retry-After``). The node waits in the database like a timer: no
    worker thread holds it, and the attempt does not count against its retry policy.

    Args:
        until: Epoch seconds before which the node must not run again.
        reason: Recorded in the history, e.g. ``circuit breaker http:api.example.com is open``.
    """

    def __init__(self, until: float, reason: str) -> None:
        super().__init__(reason)
        self.until = until
        self.reason = reason
