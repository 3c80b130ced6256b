"""Statements of the hot path, written once as SQL that PostgreSQL and SQLite share.

Built once at import: no statement is constructed per call, which is most of the
client-side cost of a transition. Everything else in the store uses SQLAlchemy Core.
Statuses are the enum members, each move checked against the transition table.
"""

from __future__ import annotations

from sqlalchemy import bindparam, text

from ..statuses import ExecutionStatus as X
from ..statuses import NodeStatus as S
from ..statuses import node_guard
from .guards import FINISHABLE, sql_in

(_CLAIMABLE,) = node_guard(S.RUNNING, S.QUEUED)
(_TIMED,) = node_guard(S.COMPLETED, S.WAITING)
(_COUNTING,) = node_guard(S.QUEUED, S.PENDING)
node_guard(S.SKIPPED, _COUNTING)
node_guard(S.FAILED, *FINISHABLE)
_OUTPUT = sql_in((S.COMPLETED, S.FAILED))

CLAIM = text(
    f"""
    UPDATE spane_nodes SET status = '{S.RUNNING}', started_at = :now, lease_until = :lease
    WHERE execution_id = :e AND node_id = :n AND status = '{_CLAIMABLE}' AND attempt = :a
      AND (wake_at IS NULL OR wake_at <= :now)
      AND EXISTS (SELECT 1 FROM spane_executions WHERE id = :e AND status = '{X.RUNNING}')
    RETURNING type, attempt_base, lane, queued_at, wake_at
    """
)

# The one way to take an execution's row (see ``ExecutionRow.lock``).
LOCK_EXECUTION = text(
    "UPDATE spane_executions SET updated_at = :now WHERE id = :e "
    "RETURNING status, remaining, workflow_id, version, tenant, parent_id, parent_node_id"
)

EXECUTION_META = text(
    "SELECT workflow_id, version, tenant, depth, parent_id, parent_node_id, traceparent "
    "FROM spane_executions WHERE id = :e"
)

EXECUTION_INPUT = text("SELECT input FROM spane_executions WHERE id = :e")

PARENT_OUTPUTS = text(
    f"""
    SELECT node_id, output FROM spane_nodes
    WHERE execution_id = :e AND node_id IN :ids
      AND status IN {_OUTPUT} AND output IS NOT NULL
    """
).bindparams(bindparam("ids", expanding=True))

# ``from_status`` is the attempt's own (running, or waiting for a woken parent); the IN
# list keeps the statement within the table whatever the caller passes.
COMPLETE = text(
    f"""
    UPDATE spane_nodes SET status = '{S.COMPLETED}', output = :output, route = :route,
        error = NULL, finished_at = :now, lease_until = NULL
    WHERE execution_id = :e AND node_id = :n AND status = :from_status AND attempt = :a
      AND status IN {sql_in(FINISHABLE)}
    RETURNING node_id
    """
)

FAIL_AND_CONTINUE = text(
    f"""
    UPDATE spane_nodes SET status = '{S.FAILED}', output = :output, error = :error,
        finished_at = :now, lease_until = NULL
    WHERE execution_id = :e AND node_id = :n AND status = :from_status AND attempt = :a
      AND status IN {sql_in(FINISHABLE)}
    RETURNING node_id
    """
)

FIRE_TIMER = text(
    f"""
    UPDATE spane_nodes SET status = '{S.COMPLETED}', finished_at = :now, lease_until = NULL
    WHERE execution_id = :e AND node_id = :n AND status = '{_TIMED}' AND attempt = :a
      AND child_id IS NULL AND wake_at <= :now
      AND EXISTS (SELECT 1 FROM spane_executions WHERE id = :e AND status = '{X.RUNNING}')
    RETURNING node_id
    """
)

# One statement tells every child of a finished node, and queues (or skips) those for
# which it was the last parent. SET expressions read the row's values before the update.
PROPAGATE = text(
    f"""
    UPDATE spane_nodes SET
        waiting_on = waiting_on - 1,
        live_parents = live_parents + :inc,
        status = CASE WHEN waiting_on = 1 THEN
            (CASE WHEN live_parents + :inc > 0 THEN '{S.QUEUED}' ELSE '{S.SKIPPED}' END)
            ELSE status END,
        attempt = CASE WHEN waiting_on = 1 AND live_parents + :inc > 0
            THEN attempt + 1 ELSE attempt END,
        queued_at = CASE WHEN waiting_on = 1 AND live_parents + :inc > 0
            THEN :now ELSE queued_at END,
        lease_until = CASE WHEN waiting_on = 1 AND live_parents + :inc > 0
            THEN :lease ELSE lease_until END,
        finished_at = CASE WHEN waiting_on = 1 AND live_parents + :inc = 0
            THEN :now ELSE finished_at END
    WHERE execution_id = :e AND node_id IN :ids AND status = '{_COUNTING}'
    RETURNING node_id, status, attempt, type, lane
    """
).bindparams(bindparam("ids", expanding=True))

COUNT_FINISHED = text(
    """
    UPDATE spane_executions SET remaining = remaining - :k, updated_at = :now
    WHERE id = :e
    RETURNING remaining, status, tenant, parent_id, parent_node_id, workflow_id
    """
)

EVENT = text(
    "INSERT INTO spane_events (execution_id, node_id, kind, attempt, detail, at) "
    "VALUES (:e, :n, :k, :a, :d, :at)"
)
