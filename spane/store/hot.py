"""Statements of the hot path, written once as SQL that PostgreSQL and SQLite share.

Built once at import: no statement is constructed per call, which is most of the
client-side cost of a transition. Everything else in the store uses SQLAlchemy Core.
"""

from __future__ import annotations

from sqlalchemy import bindparam, text

CLAIM = text(
    """
    UPDATE spane_nodes SET status = 'running', started_at = :now, lease_until = :lease
    WHERE execution_id = :e AND node_id = :n AND status = 'queued' AND attempt = :a
      AND (wake_at IS NULL OR wake_at <= :now)
      AND EXISTS (SELECT 1 FROM spane_executions WHERE id = :e AND status = 'running')
    RETURNING type, attempt_base, lane, queued_at, wake_at
    """
)

LOCK_EXECUTION = text(
    "UPDATE spane_executions SET updated_at = :now WHERE id = :e RETURNING status"
)

EXECUTION_META = text(
    "SELECT workflow_id, version, tenant, depth, parent_id, parent_node_id, traceparent "
    "FROM spane_executions WHERE id = :e"
)

EXECUTION_INPUT = text("SELECT input FROM spane_executions WHERE id = :e")

PARENT_OUTPUTS = text(
    """
    SELECT node_id, output FROM spane_nodes
    WHERE execution_id = :e AND node_id IN :ids
      AND status IN ('completed', 'failed') AND output IS NOT NULL
    """
).bindparams(bindparam("ids", expanding=True))


COMPLETE = text(
    """
    UPDATE spane_nodes SET status = 'completed', output = :output, route = :route,
        error = NULL, finished_at = :now, lease_until = NULL
    WHERE execution_id = :e AND node_id = :n AND status = :from_status AND attempt = :a
    RETURNING node_id
    """
)

FAIL_AND_CONTINUE = text(
    """
    UPDATE spane_nodes SET status = 'failed', output = :output, error = :error,
        finished_at = :now, lease_until = NULL
    WHERE execution_id = :e AND node_id = :n AND status = :from_status AND attempt = :a
    RETURNING node_id
    """
)

FIRE_TIMER = text(
    """
    UPDATE spane_nodes SET status = 'completed', finished_at = :now, lease_until = NULL
    WHERE execution_id = :e AND node_id = :n AND status = 'waiting' AND attempt = :a
      AND child_id IS NULL AND wake_at <= :now
      AND EXISTS (SELECT 1 FROM spane_executions WHERE id = :e AND status = 'running')
    RETURNING node_id
    """
)

# One statement tells every child of a finished node, and queues (or skips) those for
# which it was the last parent. SET expressions read the row's values before the update.
PROPAGATE = text(
    """
    UPDATE spane_nodes SET
        waiting_on = waiting_on - 1,
        live_parents = live_parents + :inc,
        status = CASE WHEN waiting_on = 1 THEN
            (CASE WHEN live_parents + :inc > 0 THEN 'queued' ELSE 'skipped' END)
            ELSE status END,
        attempt = CASE WHEN waiting_on = 1 AND live_parents + :inc > 0
            THEN attempt + 1 ELSE attempt END,
        queued_at = CASE WHEN waiting_on = 1 AND live_parents + :inc > 0
            THEN :now ELSE queued_at END,
        lease_until = CASE WHEN waiting_on = 1 AND live_parents + :inc > 0
            THEN :lease ELSE lease_until END,
        finished_at = CASE WHEN waiting_on = 1 AND live_parents + :inc = 0
            THEN :now ELSE finished_at END
    WHERE execution_id = :e AND node_id IN :ids AND status = 'pending'
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
