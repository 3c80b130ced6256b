"""The states of an execution and of a node: one ``StrEnum`` each.

Values are the strings stored in the database and shown to users, so a status
compares equal to its literal. The table of allowed transitions lives beside
them (added with the store's guards) so the SQL guards and the property tests
read one source.
"""

from __future__ import annotations

from enum import StrEnum


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
