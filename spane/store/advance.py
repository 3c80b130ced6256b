"""Advancing the DAG in the store: after nodes finish, their children are counted down,
queued or skipped, and the execution completes when no node is left unfinished."""

from __future__ import annotations

from sqlalchemy import Connection, update

from ..definitions import Graph
from ..statuses import ExecutionStatus as X
from ..statuses import NodeStatus as S
from ..statuses import node_guard
from . import hot
from .base import chunks
from .execution_row import ExecutionRow
from .history import History
from .records import Dispatch, Outcome
from .schema import nodes as N

(_READY,) = node_guard(S.QUEUED, S.PENDING)


class Advance:
    """Moves an execution on inside the caller's transaction.

    Args:
        history: Records the nodes queued and skipped.
        row: Completes the execution.
        lease_seconds: The lease of a node queued here.
    """

    def __init__(self, history: History, row: ExecutionRow, lease_seconds: float):
        self.history = history
        self.row = row
        self.lease_seconds = lease_seconds

    def settle(
        self,
        conn: Connection,
        execution_id: str,
        graph: Graph,
        now: float,
        work: list[tuple[str, set[str] | None]],
        finished: int,
    ) -> Outcome:
        """Tell the children of finished nodes, queue or skip those that became ready,
        and complete the execution when no node is left unfinished.

        Args:
            work: Nodes that just finished, with the successors they chose (None: all).
            finished: How many nodes finished before this call (counted down here).
        """
        dispatches: list[Dispatch] = []
        events: list[tuple[str, str | None, str, int | None]] = []
        lease = now + self.lease_seconds
        while work:
            parent, picked = work.pop()
            kids = graph.children[parent]
            live = [k for k in kids if picked is None or k in picked]
            dead = [k for k in kids if not (picked is None or k in picked)]
            for group, inc in ((live, 1), (dead, 0)):
                rows = [
                    r
                    for ids in chunks(group)
                    for r in conn.execute(
                        hot.PROPAGATE,
                        {"e": execution_id, "ids": ids, "inc": inc, "now": now, "lease": lease},
                    )
                ]
                for r in rows:
                    if r.status == S.QUEUED:
                        dispatches.append(
                            Dispatch(execution_id, r.node_id, r.attempt, r.type, r.lane)
                        )
                        events.append((execution_id, r.node_id, "queued", r.attempt))
                    elif r.status == S.SKIPPED:
                        events.append((execution_id, r.node_id, "skipped", None))
                        finished += 1
                        work.append((r.node_id, set()))
        self.history.record_events(conn, events)
        ex = conn.execute(hot.COUNT_FINISHED, {"e": execution_id, "k": finished, "now": now}).one()
        if ex.remaining > 0 or ex.status != X.RUNNING:
            # A paused execution whose last node finished completes on resume.
            return Outcome(dispatches=dispatches)
        return self.row.complete(conn, execution_id, graph, ex, now, dispatches)

    def queue(
        self, conn: Connection, execution_id: str, ready: list[str], now: float
    ) -> list[Dispatch]:
        """Queue pending nodes whose parents are all finished; return their messages."""
        rows = [
            row
            for ids in chunks(ready)
            for row in conn.execute(
                update(N)
                .where(
                    N.c.execution_id == execution_id,
                    N.c.node_id.in_(ids),
                    N.c.status == _READY,
                )
                .values(
                    status=S.QUEUED,
                    attempt=N.c.attempt + 1,
                    queued_at=now,
                    lease_until=now + self.lease_seconds,
                )
                .returning(N.c.node_id, N.c.attempt, N.c.type, N.c.lane)
            )
        ]
        self.history.record_events(
            conn, [(execution_id, r.node_id, "queued", r.attempt) for r in rows]
        )
        return [Dispatch(execution_id, r.node_id, r.attempt, r.type, r.lane) for r in rows]
