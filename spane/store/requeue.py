"""An attempt given back to the queue as a new attempt: a retry after a failure, a
deferral (the attempt not counted), a hand-back by a draining worker.

All three take the execution row first, like every transition, and close the node as
cancelled instead when the execution ended meanwhile (nothing would run it again).
The new attempt number makes the old attempt's message and result stale.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, update

from ..statuses import EXECUTION_ACTIVE, node_guard
from ..statuses import NodeStatus as S
from .base import retry_conflicts
from .execution_row import ExecutionRow
from .guards import FINISHABLE, held
from .history import History
from .records import Claim, Dispatch, Outcome
from .schema import nodes as N

node_guard(S.QUEUED, *FINISHABLE)
node_guard(S.CANCELLED, *FINISHABLE)


class Requeue:
    """Retries, deferrals and hand-backs.

    Args:
        engine: The store's engine.
        history: Records each with its reason.
        row: Takes the execution row.
        lease_seconds: The lease of the new attempt, from when it is due.
    """

    def __init__(self, engine: Engine, history: History, row: ExecutionRow, lease_seconds: float):
        self.engine = engine
        self.history = history
        self.row = row
        self.lease_seconds = lease_seconds

    @retry_conflicts
    def retry_node(
        self, claim: Claim, error: str, delay: float, *, trace: str | None = None
    ) -> Outcome:
        """Queue the next attempt of a node after ``delay`` seconds.

        ``trace`` (a traceback), when given, is kept as the error instead of ``error``.
        """
        error = trace or error
        return self._requeue(
            claim, "retrying", error, delay, counted=True, error=error, child_id=None
        )

    @retry_conflicts
    def defer_node(self, claim: Claim, until: float, reason: str) -> Outcome:
        """Put a claimed node back in ``queued`` until ``until``, the attempt not counted.

        Like a hand-back, the next attempt gets a new number (so this attempt's message
        is stale) and the retry count is unchanged (``attempt_base`` moves with it). The
        returned message is delayed until ``until``; if the broker loses it, the lease
        (from ``until``) brings it back.
        """
        return self._requeue(claim, "deferred", reason, max(0.0, until - time.time()))

    @retry_conflicts
    def hand_back(self, claim: Claim, reason: str) -> Dispatch | None:
        """Give a running attempt back to the queue as a new attempt; None if stale (or
        closed because its execution ended)."""
        outcome = self._requeue(claim, "handed_back", reason, 0.0, error=reason)
        return outcome.dispatches[0] if outcome.dispatches else None

    def _requeue(
        self,
        claim: Claim,
        event: str,
        detail: str,
        delay: float,
        *,
        counted: bool = False,
        **values: Any,
    ) -> Outcome:
        """Queue ``claim``'s node as a new attempt due in ``delay`` seconds, with
        ``values``; ``counted`` attempts count against the retry policy."""
        now = time.time()
        with self.engine.begin() as conn:
            ex = self.row.lock(conn, claim.execution_id, now)
            if ex.status in EXECUTION_ACTIVE:
                moved = {
                    "status": S.QUEUED,
                    "attempt": N.c.attempt + 1,
                    "attempt_base": N.c.attempt_base + (0 if counted else 1),
                    "queued_at": now,
                    "wake_at": now + delay,
                    "lease_until": now + delay + self.lease_seconds,
                    **values,
                }
            else:
                event = "cancelled"
                moved = {"status": S.CANCELLED, "finished_at": now, "lease_until": None, **values}
            row = conn.execute(
                update(N)
                .where(held(claim))
                .values(**moved)
                .returning(N.c.attempt, N.c.type, N.c.lane)
            ).first()
            if row is None:
                return Outcome(applied=False)
            self.history.record_event(
                conn, claim.execution_id, claim.node_id, event, claim.attempt, detail
            )
        if moved["status"] == S.CANCELLED:
            return Outcome()
        return Outcome(
            dispatches=[
                Dispatch(claim.execution_id, claim.node_id, row.attempt, row.type, row.lane, delay)
            ]
        )
