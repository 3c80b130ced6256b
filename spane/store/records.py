"""Plain records the store hands back (no ORM objects leave the store)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..statuses import EXECUTION_ACTIVE, EXECUTION_TERMINAL, NODE_TERMINAL, NodeStatus

__all__ = ["EXECUTION_ACTIVE", "EXECUTION_TERMINAL", "NODE_TERMINAL"]


@dataclass(frozen=True)
class Dispatch:
    """A node message to send once the transaction that queued the node has committed."""

    execution_id: str
    node_id: str
    attempt: int
    type: str
    lane: str
    delay: float = 0.0


@dataclass(frozen=True)
class Overdue:
    """A queued node whose lease ran out: its message, and since when it is due."""

    dispatch: Dispatch
    since: float


@dataclass(frozen=True)
class Claim:
    """A node attempt this worker now owns, with what it needs to run.

    ``input`` is packed (stored texts); ``Store.node_input`` resolves it.
    ``attempt`` identifies the attempt (it only grows, so a stale message or a late
    result of a superseded attempt is recognised); ``tries`` counts attempts against
    the retry policy since the node was last revived. ``ready_at`` is when the attempt
    became due: when it was queued, or when its retry delay ran out.
    """

    execution_id: str
    node_id: str
    attempt: int
    type: str
    workflow_id: str
    version: int
    tenant: str
    depth: int
    input: Any
    tries: int = 1
    status: str = NodeStatus.RUNNING
    lane: str = "default"
    #: W3C traceparent of the execution's root span (None: traced without one).
    traceparent: str | None = None
    ready_at: float = 0.0


@dataclass
class Outcome:
    """What a transition did: messages to send and whether the execution ended."""

    applied: bool = True
    dispatches: list[Dispatch] = field(default_factory=list)
    ended: str | None = None
    workflow_id: str = ""  # of an execution that ended
    parent_id: str | None = None
    parent_node_id: str | None = None
    child_id: str = ""
    output: str | None = None  # the stored text of a completed node's output


@dataclass(frozen=True)
class NodeState:
    """One node of an execution, as ``get_execution`` shows it."""

    status: str
    type: str
    attempts: int
    output: Any
    error: str | None
    queued_at: float | None
    started_at: float | None
    finished_at: float | None
    child_id: str | None = None


@dataclass(frozen=True)
class Execution:
    """An execution and its nodes."""

    id: str
    workflow_id: str
    version: int
    tenant: str
    status: str
    input: Any
    output: Any
    error: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    parent_id: str | None = None
    parent_node_id: str | None = None
    children: list[str] = field(default_factory=list)
    nodes: dict[str, NodeState] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        """True once the execution is completed, failed or cancelled."""
        return self.status in EXECUTION_TERMINAL


@dataclass(frozen=True)
class ExecutionSummary:
    """One row of ``list_executions`` (no payloads are read)."""

    id: str
    workflow_id: str
    version: int
    tenant: str
    status: str
    created_at: float
    finished_at: float | None
    parent_id: str | None
