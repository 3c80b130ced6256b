"""Parking: nodes that wait in the database (timers, sub-workflow parents), not in a
worker thread."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, select, update

from .base import retry_conflicts
from .records import EXECUTION_ACTIVE, Claim, Dispatch, Outcome
from .schema import executions as E
from .schema import nodes as N
from .transitions import Transitions, _held


class Parking(Transitions):
    """Layer of ``Store`` holding parked nodes: park, timers due, parents to wake."""

    @retry_conflicts
    def park_node(self, claim: Claim, until: float, output: Any) -> bool:
        """Park a running node in ``waiting`` until ``until``; False if stale."""
        packed = self.payloads.pack(claim.tenant, output, what=f"output of node {claim.node_id}")
        with self.engine.begin() as conn:
            if not self._may_park(conn, claim):
                return False
            done = conn.execute(
                update(N)
                .where(_held(claim))
                .values(status="waiting", wake_at=until, output=packed, lease_until=None)
            )
            if done.rowcount:
                self.record_events(
                    conn, [(claim.execution_id, claim.node_id, "waiting", claim.attempt)]
                )
            return bool(done.rowcount)

    @retry_conflicts
    def defer_node(self, claim: Claim, until: float, reason: str) -> Outcome:
        """Put a claimed node back in ``queued`` until ``until``, the attempt not counted.

        Like a hand-back, the next attempt gets a new number (so this attempt's message
        is stale) and the retry count is unchanged (``attempt_base`` moves with it). The
        returned message is delayed until ``until``; if the broker loses it, the lease
        (from ``until``) brings it back.
        """
        now = time.time()
        with self.engine.begin() as conn:
            ex = self._lock_execution(conn, claim.execution_id, now)
            cancelled = ex.status not in EXECUTION_ACTIVE
            row = conn.execute(
                update(N)
                .where(_held(claim))
                .values(
                    status="cancelled" if cancelled else "queued",
                    attempt=N.c.attempt + (0 if cancelled else 1),
                    attempt_base=N.c.attempt_base + (0 if cancelled else 1),
                    queued_at=now,
                    wake_at=until,
                    lease_until=None if cancelled else max(now, until) + self.lease_seconds,
                    finished_at=now if cancelled else None,
                )
                .returning(N.c.attempt, N.c.type, N.c.lane)
            ).first()
            if row is None:
                return Outcome(applied=False)
            kind = "cancelled" if cancelled else "deferred"
            self.record_event(conn, claim.execution_id, claim.node_id, kind, claim.attempt, reason)
        if cancelled:
            return Outcome()
        delay = max(0.0, until - now)
        return Outcome(
            dispatches=[
                Dispatch(claim.execution_id, claim.node_id, row.attempt, row.type, row.lane, delay)
            ]
        )

    def _may_park(self, conn: Connection, claim: Claim) -> bool:
        """Lock the execution; if it ended meanwhile, cancel the node instead of parking."""
        ex = self._lock_execution(conn, claim.execution_id, time.time())
        if ex.status in EXECUTION_ACTIVE:
            return True
        done = conn.execute(
            update(N)
            .where(_held(claim))
            .values(status="cancelled", finished_at=time.time(), lease_until=None)
        )
        if done.rowcount:
            self.record_event(
                conn,
                claim.execution_id,
                claim.node_id,
                "cancelled",
                claim.attempt,
                f"execution {ex.status} before the node parked",
            )
        return False

    def due_timers(self, now: float, limit: int = 100) -> list[tuple[str, str, int]]:
        """Return ``(execution_id, node_id, attempt)`` of waiting timers that fell due."""
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(N.c.execution_id, N.c.node_id, N.c.attempt)
                .join(E, E.c.id == N.c.execution_id)
                .where(
                    N.c.status == "waiting",
                    N.c.child_id.is_(None),
                    N.c.wake_at <= now,
                    E.c.status == "running",
                )
                .limit(limit)
            )
            return [(r.execution_id, r.node_id, r.attempt) for r in rows]

    # -- internals -------------------------------------------------------------------

    def waiting_claim(self, execution_id: str, node_id: str, child_id: str) -> Claim | None:
        """The parked attempt of a ``subworkflow`` node waiting on ``child_id``, if any and
        if its execution is running (a paused one is woken by the sweep after resume)."""
        with self.engine.connect() as conn:
            return self._waiting(
                conn, execution_id, node_id, N.c.child_id == child_id, E.c.status == "running"
            )

    def _waiting(
        self, conn: Connection, execution_id: str, node_id: str, *where: Any
    ) -> Claim | None:
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
                N.c.status == "waiting",
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
            status="waiting",
            lane=row.lane,
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
                    N.c.status == "waiting",
                    child.c.status.in_(("completed", "failed", "cancelled")),
                    E.c.status == "running",
                )
                .limit(limit)
            ).all()
        return [(r.execution_id, r.node_id, r.child_id) for r in rows]
