"""Node transitions, each guarded so a duplicate or stale message cannot apply twice.

Concurrency rests on row locks. Every transition that changes an execution's state
takes the execution row first (``ExecutionRow.lock``), then its node's row (status and
attempt guard), then each child's row (its countdown of unfinished parents, decremented
with RETURNING, so exactly one finishing parent sees it reach zero), and updates the
execution row's countdown of unfinished nodes last, so exactly one transition sees it
reach zero and completes the execution. Taking the execution row first gives one lock
order, so two transitions of one execution queue up instead of deadlocking (children
updated in opposite orders by two routers, a failure cancelling nodes a sibling just
queued); the price is that siblings of one wide fan-out finish one at a time, each
holding the row only until its commit. A claim takes no execution lock: it only reads
the execution's status in its guard.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, update

from .. import codec
from ..payloads import Payloads
from ..statuses import EXECUTION_ACTIVE, node_guard
from ..statuses import ExecutionStatus as X
from ..statuses import NodeStatus as S
from . import hot
from .advance import Advance
from .base import retry_conflicts
from .definitions import Definitions
from .execution_row import ExecutionRow
from .guards import FINISHABLE, held
from .history import History
from .limits import Limits
from .records import Claim, Outcome
from .schema import nodes as N

node_guard(S.FAILED, *FINISHABLE)
# A timer or a parent's wake-up comes twice by design (message and sweep): the second
# finds the node moved on, which is no result of anyone's.
_REPEATABLE = ("timer_fired", "woken")


class Transitions:
    """Completing and failing node attempts (claims: ``Claims``; retries: ``Requeue``).

    Args:
        engine: The store's engine.
        payloads: Packs outputs.
        definitions: The workflows' graphs.
        history: Records every transition.
        row: Takes and ends the execution row.
        advance: Moves the execution on after a node finishes.
    """

    def __init__(
        self,
        engine: Engine,
        payloads: Payloads,
        definitions: Definitions,
        history: History,
        row: ExecutionRow,
        advance: Advance,
        limits: Limits,
    ):
        self.limits = limits
        self.engine = engine
        self.payloads = payloads
        self.definitions = definitions
        self.history = history
        self.row = row
        self.advance = advance

    @retry_conflicts
    def complete_node(
        self,
        claim: Claim,
        output: Any,
        *,
        route: list[str] | None = None,
        stored: str | None = None,
    ) -> Outcome:
        """Record a node's output and queue the successors that became ready.

        Args:
            stored: The output as it is already stored (a child execution's, for its
                parked parent), kept as it is instead of ``output`` being encoded again:
                a child's output composed from references stays so.
        """
        packed = (
            stored
            if stored is not None
            else self.payloads.pack(claim.tenant, output, what=f"output of node {claim.node_id}")
        )
        params = {
            "output": packed,
            "route": None if route is None else codec.dumps(route),
            "from_status": claim.status,
        }
        event = "completed" if claim.status == S.RUNNING else "woken"
        chosen = None if route is None else set(route)
        outcome = self._finish(hot.COMPLETE, params, claim, event, chosen)
        if outcome.applied:
            outcome.output = packed
        return outcome

    @retry_conflicts
    def fire_timer(self, execution_id: str, node_id: str, attempt: int) -> Outcome:
        """Complete a ``waiting`` node whose timer fell due (the output was stored at park).

        A paused execution's timers do not fire: they fire on resume.
        """
        return self._finish(hot.FIRE_TIMER, {}, (execution_id, node_id, attempt), "timer_fired")

    @retry_conflicts
    def fail_node(
        self, claim: Claim, error: str, *, continue_on_fail: bool, trace: str | None = None
    ) -> Outcome:
        """Fail a node for good; the execution fails too unless ``continue_on_fail``.

        Args:
            error: One line saying why; the execution's error and, with
                ``continue_on_fail``, the node's ``{"error": ...}`` output.
            trace: The whole story (a traceback), kept as the node's error, in its
                history and in its dead letter; ``error`` when not given.
        """
        detail = trace or error
        if continue_on_fail:
            params = {
                "output": self.payloads.pack(claim.tenant, {"error": error}),
                "error": detail,
                "from_status": claim.status,
            }
            return self._finish(hot.FAIL_AND_CONTINUE, params, claim, "failed", dead=detail)
        with self.engine.begin() as conn:
            ex = self.row.lock(conn, claim.execution_id, time.time())
            now = time.time()  # after the lock: what committed before it came first
            done = conn.execute(
                update(N)
                .where(held(claim))
                .values(status=S.FAILED, error=detail, finished_at=now, lease_until=None)
            )
            if done.rowcount == 0:
                return Outcome(applied=False)
            self.history.record_event(
                conn, claim.execution_id, claim.node_id, "failed", claim.attempt, detail
            )
            self.history.dead_node(conn, claim, detail)
            if ex.status not in EXECUTION_ACTIVE:
                return Outcome()
            message = f"node {claim.node_id!r} failed: {error}"
            self.row.end(conn, claim.execution_id, X.FAILED, now, error=message)
            return Outcome(
                ended=X.FAILED,
                workflow_id=ex.workflow_id,
                parent_id=ex.parent_id,
                parent_node_id=ex.parent_node_id,
                child_id=claim.execution_id,
            )

    def record_stale_result(self, claim: Claim, detail: str) -> None:
        """Keep in the history that a superseded attempt came back; nothing else changes."""
        with self.engine.begin() as conn:
            self.history.record_event(
                conn, claim.execution_id, claim.node_id, "stale_result", claim.attempt, detail
            )

    def _finish(
        self,
        statement: Any,
        params: dict[str, Any],
        attempt_of: Claim | tuple[str, str, int],
        event: str,
        chosen: set[str] | None = None,
        *,
        dead: str | None = None,
    ) -> Outcome:
        """Apply a hot-path statement that finishes a node's attempt, and advance the DAG.

        Args:
            attempt_of: The attempt's claim, or ``(execution_id, node_id, attempt)``.
            dead: The error of a node failed for good, kept as its dead letter in the
                same transaction (needs the claim).
        """
        if isinstance(attempt_of, Claim):
            execution_id, node_id, attempt = (
                attempt_of.execution_id,
                attempt_of.node_id,
                attempt_of.attempt,
            )
        else:
            execution_id, node_id, attempt = attempt_of
        now = time.time()
        with self.engine.begin() as conn:
            ex = self.row.lock(conn, execution_id, now, missing_ok=True)
            status = None if ex is None else ex.status
            if event == "woken" and status != X.RUNNING:
                return Outcome(applied=False)  # a paused parent is woken on resume
            row = conn.execute(
                statement, {"e": execution_id, "n": node_id, "a": attempt, "now": now, **params}
            ).first()
            if row is None:
                if event not in _REPEATABLE:
                    # A result of a superseded attempt (or of an ended execution's node):
                    # kept in the history, and nothing else changes.
                    self.history.record_events(
                        conn, [(execution_id, node_id, "stale_result", attempt)]
                    )
                return Outcome(applied=False)
            self.history.record_events(conn, [(execution_id, node_id, event, attempt)])
            if dead is not None and isinstance(attempt_of, Claim):
                self.history.dead_node(conn, attempt_of, dead)
            # The node's concurrency slot, if it held one, goes to the next waiter.
            admitted = self.limits.ended(conn, execution_id, node_id)
            if status not in EXECUTION_ACTIVE:
                return Outcome(dispatches=admitted)
            meta = self.row.meta(conn, execution_id)
            graph = self.definitions.graph(meta.workflow_id, meta.version, conn)
            outcome = self.advance.settle(conn, execution_id, graph, now, [(node_id, chosen)], 1)
            outcome.dispatches += admitted
            return outcome
