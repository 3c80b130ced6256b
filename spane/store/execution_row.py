"""The execution row: its lock, its unchanging fields, and its end.

Every transition of an execution takes this row first, through ``ExecutionRow.lock``
(the only way to take it): one lock order (execution, then node, then children), so
concurrent transitions of one execution queue up instead of deadlocking, and the
row's countdown of unfinished nodes lets exactly one transition see it reach zero.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, select, update

from .. import errors
from ..definitions import Graph
from ..payloads import Payloads
from ..statuses import EXECUTION_ACTIVE
from ..statuses import ExecutionStatus as X
from ..statuses import NodeStatus as S
from . import hot
from .base import chunks
from .guards import CANCELLED_WITH_EXECUTION, ENDING_FROM
from .history import History
from .records import Dispatch, Outcome
from .schema import executions as E
from .schema import nodes as N

_WITH_OUTPUT = (S.COMPLETED, S.FAILED)


class ExecutionRow:
    """Operations on the execution row inside the caller's transaction.

    Args:
        payloads: Composes an execution's output from its final nodes' stored outputs.
        history: Records the execution's end.
    """

    def __init__(self, payloads: Payloads, history: History):
        self.payloads = payloads
        self.history = history
        self._meta: dict[str, Any] = {}

    def lock(
        self, conn: Connection, execution_id: str, now: float, *, missing_ok: bool = False
    ) -> Any:
        """Take the execution row and return its state (status, remaining, workflow_id,
        version, tenant, parent_id, parent_node_id).

        Raises:
            UnknownExecution: If there is no such execution, unless ``missing_ok`` (then
                None is returned: a late message of a deleted execution).
        """
        row = conn.execute(hot.LOCK_EXECUTION, {"e": execution_id, "now": now}).first()
        if row is None and not missing_ok:
            raise errors.UnknownExecution(f"no execution has id {execution_id!r}")
        return row

    def meta(self, conn: Connection, execution_id: str) -> Any:
        """The fields of an execution that never change, cached per process."""
        meta = self._meta.get(execution_id)
        if meta is None:
            meta = conn.execute(hot.EXECUTION_META, {"e": execution_id}).one()
            if len(self._meta) > 50_000:
                self._meta.clear()
            self._meta[execution_id] = meta
        return meta

    def cached_meta(self, execution_id: str) -> Any:
        """An execution's fixed fields if this process has read them, else None."""
        return self._meta.get(execution_id)

    def complete(
        self,
        conn: Connection,
        execution_id: str,
        graph: Graph,
        ex: Any,
        now: float,
        dispatches: list[Dispatch] | None = None,
    ) -> Outcome:
        """End a locked execution ``completed`` with its final nodes' output."""
        output = self.output(conn, execution_id, graph)
        self.end(conn, execution_id, X.COMPLETED, now, output=output)
        return Outcome(
            dispatches=dispatches or [],
            ended=X.COMPLETED,
            workflow_id=ex.workflow_id,
            parent_id=ex.parent_id,
            parent_node_id=ex.parent_node_id,
            child_id=execution_id,
        )

    def output(self, conn: Connection, execution_id: str, graph: Graph) -> str:
        """The execution's output, composed from its sinks' stored texts (nothing is
        decoded or encoded here)."""
        rows = [
            row
            for ids in chunks(graph.sinks)
            for row in conn.execute(
                select(N.c.node_id, N.c.output, N.c.status).where(
                    N.c.execution_id == execution_id, N.c.node_id.in_(ids)
                )
            )
        ]
        if len(graph.sinks) == 1:
            done = rows and rows[0].status in _WITH_OUTPUT and rows[0].output
            return rows[0].output if done else "null"
        parts = {
            r.node_id: r.output for r in rows if r.status in _WITH_OUTPUT and r.output is not None
        }
        return self.payloads.compose(parts)

    def end(
        self,
        conn: Connection,
        execution_id: str,
        status: X,
        now: float,
        *,
        output: str | None = None,
        error: str | None = None,
    ) -> None:
        """End a locked execution; unless it completed, cancel its nodes not started (or
        parked) and its active children."""
        conn.execute(
            update(E)
            .where(E.c.id == execution_id, E.c.status.in_(ENDING_FROM[status]))
            .values(status=status, output=output, error=error, finished_at=now)
        )
        self.history.record_event(conn, execution_id, None, f"execution_{status}", None, error)
        if status == X.COMPLETED:
            return
        conn.execute(
            update(N)
            .where(N.c.execution_id == execution_id, N.c.status.in_(CANCELLED_WITH_EXECUTION))
            .values(status=S.CANCELLED, finished_at=now, lease_until=None)
        )
        # Child executions still running would otherwise run to completion, side effects
        # included, for a parent that no longer wants their result. Parent rows are
        # locked before child rows everywhere (a child is created under its parent's
        # lock), so taking them here cannot deadlock; the depth is capped.
        children = conn.execute(
            select(E.c.id).where(E.c.parent_id == execution_id, E.c.status.in_(EXECUTION_ACTIVE))
        ).scalars()
        for child_id in list(children):
            self.lock(conn, child_id, now)
            # Timed after the lock: whatever the child did before it (starting a child of
            # its own, say) happened before it was cancelled.
            self.end(
                conn,
                child_id,
                X.CANCELLED,
                time.time(),
                error=f"parent execution {execution_id} {status}",
            )
