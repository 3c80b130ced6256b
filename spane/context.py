"""What node code receives (``NodeContext``) and may return (``Route``, ``Park``)."""

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
