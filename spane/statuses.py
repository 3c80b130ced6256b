"""The states of an execution and of a node, and the transitions allowed between them.

Values are the strings stored in the database and shown to users, so a status
compares equal to its literal. ``NODE_TRANSITIONS`` and ``EXECUTION_TRANSITIONS`` are
the one table of allowed moves: the store's guarded UPDATEs take their ``WHERE status``
sets from ``node_guard``/``execution_guard``, which refuse (at import) a move the table
does not allow, and the property tests check every move the database records.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar


class ExecutionStatus(StrEnum):
    """An execution's state (SPEC §5)."""

    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class NodeStatus(StrEnum):
    """A node's state: ``pending → queued → running → completed | failed | skipped |
    cancelled``, with ``waiting`` for a parked node."""

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


EXECUTION_ACTIVE = (ExecutionStatus.RUNNING, ExecutionStatus.PAUSED)
EXECUTION_TERMINAL = (
    ExecutionStatus.COMPLETED,
    ExecutionStatus.FAILED,
    ExecutionStatus.CANCELLED,
)
NODE_TERMINAL = (
    NodeStatus.COMPLETED,
    NodeStatus.FAILED,
    NodeStatus.SKIPPED,
    NodeStatus.CANCELLED,
)

_N = NodeStatus
#: The statuses a node is inserted with: ``queued`` for an entry node, else ``pending``.
NODE_INITIAL = (NodeStatus.PENDING, NodeStatus.QUEUED)
#: from-status → the statuses a node may move to. ``running → queued`` is a retry,
#: hand-back, deferral or expired lease; ``waiting → queued`` a retry of a parked node
#: whose child failed; ``→ pending`` a revival (replay, dead-letter retry) of an ended
#: execution, whose nodes may still be running or queued when it ended.
NODE_TRANSITIONS: Mapping[NodeStatus, frozenset[NodeStatus]] = {
    _N.PENDING: frozenset({_N.QUEUED, _N.SKIPPED, _N.CANCELLED}),
    _N.QUEUED: frozenset({_N.RUNNING, _N.CANCELLED, _N.PENDING}),
    _N.RUNNING: frozenset(
        {_N.COMPLETED, _N.FAILED, _N.WAITING, _N.QUEUED, _N.CANCELLED, _N.PENDING}
    ),
    _N.WAITING: frozenset({_N.COMPLETED, _N.FAILED, _N.QUEUED, _N.CANCELLED, _N.PENDING}),
    _N.COMPLETED: frozenset({_N.PENDING}),
    _N.FAILED: frozenset({_N.PENDING}),
    _N.SKIPPED: frozenset({_N.PENDING}),
    _N.CANCELLED: frozenset({_N.PENDING}),
}

_X = ExecutionStatus
#: The status an execution is inserted with.
EXECUTION_INITIAL = (ExecutionStatus.RUNNING,)
#: from-status → the statuses an execution may move to. A paused one fails when a node
#: running through the pause fails for good; an ended one runs again when revived.
EXECUTION_TRANSITIONS: Mapping[ExecutionStatus, frozenset[ExecutionStatus]] = {
    _X.RUNNING: frozenset({_X.PAUSED, _X.COMPLETED, _X.FAILED, _X.CANCELLED}),
    _X.PAUSED: frozenset({_X.RUNNING, _X.FAILED, _X.CANCELLED}),
    _X.COMPLETED: frozenset({_X.RUNNING}),
    _X.FAILED: frozenset({_X.RUNNING}),
    _X.CANCELLED: frozenset({_X.RUNNING}),
}


def node_guard(to: NodeStatus, *sources: NodeStatus) -> tuple[NodeStatus, ...]:
    """The statuses a guarded UPDATE moves a node to ``to`` from (all allowed ones when
    none are given), each checked against ``NODE_TRANSITIONS``.

    Raises:
        ValueError: If the table does not allow one of the moves.
    """
    return _guard(NODE_TRANSITIONS, to, sources)


def execution_guard(to: ExecutionStatus, *sources: ExecutionStatus) -> tuple[ExecutionStatus, ...]:
    """As ``node_guard``, for an execution (``EXECUTION_TRANSITIONS``)."""
    return _guard(EXECUTION_TRANSITIONS, to, sources)


S = TypeVar("S", NodeStatus, ExecutionStatus)


def _guard(table: Mapping[S, frozenset[S]], to: S, sources: tuple[S, ...]) -> tuple[S, ...]:
    if not sources:
        return tuple(s for s, targets in table.items() if to in targets)
    wrong = [str(s) for s in sources if to not in table[s]]
    if wrong:
        raise ValueError(f"no transition {', '.join(wrong)} → {to}: add it to the table first")
    return sources
