"""Parking: nodes that wait in the database (timers, sub-workflow parents, signal
waits), not in a worker thread. Every kind of wait parks through ``Parking.park``."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from ..payloads import Payloads
from ..statuses import EXECUTION_ACTIVE, EXECUTION_TERMINAL, node_guard
from ..statuses import ExecutionStatus as X
from ..statuses import NodeStatus as S
from .base import retry_conflicts
from .execution_row import ExecutionRow
from .guards import held
from .history import History
from .records import Claim
from .schema import executions as E
from .schema import nodes as N

node_guard(S.WAITING, S.RUNNING)
node_guard(S.CANCELLED, S.RUNNING)


class Parking:
    """Parked nodes: park, timers due, parents to wake.

    Args:
        engine: The store's engine.
        payloads: Packs a timer node's output.
        history: Records parking.
        row: Takes the execution row before a node parks.
    """

    def __init__(
        self,
        engine: Engine,
        payloads: Payloads,
        history: History,
        row: ExecutionRow,
    ):
        self.engine = engine
        self.payloads = payloads
        self.history = history
        self.row = row

    @retry_conflicts
    def park_node(self, claim: Claim, until: float, output: Any) -> bool:
        """Park a running node in ``waiting`` until ``until``; False if stale."""
        packed = self.payloads.pack(claim.tenant, output, what=f"output of node {claim.node_id}")
        with self.engine.begin() as conn:
            return self.park(conn, claim, "waiting", None, wake_at=until, output=packed)

    def park(
        self, conn: Connection, claim: Claim, event: str, detail: str | None, **values: Any
    ) -> bool:
        """Move a running attempt to ``waiting`` with ``values``, recording ``event``;
        False if the attempt is stale. If the execution ended meanwhile, the node is
        cancelled instead (it would otherwise wait for ever)."""
        ex = self.row.lock(conn, claim.execution_id, time.time())
        if ex.status not in EXECUTION_ACTIVE:
            self._cancel(conn, claim, f"execution {ex.status} before the node parked")
            return False
        done = conn.execute(
            update(N).where(held(claim)).values(status=S.WAITING, lease_until=None, **values)
        )
        if done.rowcount:
            self.history.record_event(
                conn, claim.execution_id, claim.node_id, event, claim.attempt, detail
            )
        return bool(done.rowcount)

    def _cancel(self, conn: Connection, claim: Claim, reason: str) -> None:
        done = conn.execute(
            update(N)
            .where(held(claim))
            .values(status=S.CANCELLED, finished_at=time.time(), lease_until=None)
        )
        if done.rowcount:
            self.history.record_event(
                conn, claim.execution_id, claim.node_id, "cancelled", claim.attempt, reason
            )

    def due_timers(self, now: float, limit: int = 100) -> list[tuple[str, str, int]]:
        """Return ``(execution_id, node_id, attempt)`` of waiting timers that fell due."""
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(N.c.execution_id, N.c.node_id, N.c.attempt)
                .join(E, E.c.id == N.c.execution_id)
                .where(
                    N.c.status == S.WAITING,
                    N.c.child_id.is_(None),
                    N.c.wake_at <= now,
                    E.c.status == X.RUNNING,
                )
                .limit(limit)
            )
            return [(r.execution_id, r.node_id, r.attempt) for r in rows]

    def waiting_claim(self, execution_id: str, node_id: str, child_id: str) -> Claim | None:
        """The parked attempt of a ``subworkflow`` node waiting on ``child_id``, if any and
        if its execution is running (a paused one is woken by the sweep after resume)."""
        with self.engine.connect() as conn:
            return parked(
                conn, execution_id, node_id, N.c.child_id == child_id, E.c.status == X.RUNNING
            )

    def unwoken_parents(self, limit: int = 100) -> list[tuple[str, str, str]]:
        """``(parent_id, node_id, child_id)`` of parents parked on children that ended."""
        child = E.alias("child")
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(N.c.execution_id, N.c.node_id, N.c.child_id)
                .join(child, child.c.id == N.c.child_id)
                .join(E, E.c.id == N.c.execution_id)
                .where(
                    N.c.status == S.WAITING,
                    child.c.status.in_(EXECUTION_TERMINAL),
                    E.c.status == X.RUNNING,
                )
                .limit(limit)
            ).all()
        return [(r.execution_id, r.node_id, r.child_id) for r in rows]


def parked(conn: Connection, execution_id: str, node_id: str, *where: Any) -> Claim | None:
    """The parked (``waiting``) attempt of a node, if any and if ``where`` holds too."""
    row = conn.execute(
        select(
            N.c.attempt,
            N.c.attempt_base,
            N.c.type,
            N.c.lane,
            E.c.workflow_id,
            E.c.version,
            E.c.tenant,
            E.c.depth,
        )
        .join(E, E.c.id == N.c.execution_id)
        .where(
            N.c.execution_id == execution_id,
            N.c.node_id == node_id,
            N.c.status == S.WAITING,
            *where,
        )
    ).first()
    if row is None:
        return None
    return Claim(
        execution_id=execution_id,
        node_id=node_id,
        attempt=row.attempt,
        type=row.type,
        workflow_id=row.workflow_id,
        version=row.version,
        tenant=row.tenant,
        depth=row.depth,
        input=None,
        tries=row.attempt - row.attempt_base,
        status=S.WAITING,
        lane=row.lane,
    )
