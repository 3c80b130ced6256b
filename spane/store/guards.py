"""The WHERE clauses of guarded transitions, shared by every part of the store.

A transition applies only while the node is still in the state it moves from, so a
duplicate or stale message cannot apply it twice. The status sets come from the one
transition table (``spane.statuses``): a guard the table does not allow fails at import.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_

from ..statuses import EXECUTION_ACTIVE, EXECUTION_TERMINAL, execution_guard, node_guard
from ..statuses import ExecutionStatus as X
from ..statuses import NodeStatus as S
from .records import Claim
from .schema import nodes as N

#: An attempt completes or fails from these: running, or parked (a woken parent, a
#: fired timer, a delivered signal, a failed child).
FINISHABLE = node_guard(S.COMPLETED, S.RUNNING, S.WAITING)
#: The nodes an ended execution cancels: not started, or parked. A running attempt is
#: left to finish; its result is then stale.
CANCELLED_WITH_EXECUTION = node_guard(S.CANCELLED, S.PENDING, S.QUEUED, S.WAITING)
#: The nodes whose lease recovery looks at.
LEASED = node_guard(S.CANCELLED, S.QUEUED, S.RUNNING)
#: The nodes a revival resets (any that may move to pending).
REVIVABLE = node_guard(S.PENDING)
#: The executions that may end with each ending status: active ones the table allows
#: (a paused execution fails or is cancelled, and completes only once resumed).
ENDING_FROM = {
    end: tuple(s for s in execution_guard(end) if s in EXECUTION_ACTIVE)
    for end in EXECUTION_TERMINAL
}
#: The executions a revival runs again: ended ones.
REVIVED_FROM = execution_guard(X.RUNNING, X.COMPLETED, X.FAILED, X.CANCELLED)


def node(execution_id: str, node_id: str) -> Any:
    """The row of one node."""
    return and_(N.c.execution_id == execution_id, N.c.node_id == node_id)


def held(claim: Claim) -> Any:
    """The row of ``claim``'s node, only while that attempt still holds it."""
    return and_(
        node(claim.execution_id, claim.node_id),
        N.c.status == claim.status,
        N.c.attempt == claim.attempt,
    )


def sql_in(statuses: tuple[str, ...]) -> str:
    """A guard's statuses as an SQL list, for statements written as text."""
    return "(" + ", ".join(f"'{s}'" for s in statuses) + ")"
