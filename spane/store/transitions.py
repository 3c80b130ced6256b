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
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from .. import codec
from ..payloads import Payloads
from ..statuses import EXECUTION_ACTIVE, node_guard
from ..statuses import ExecutionStatus as X
from ..statuses import NodeStatus as S
from . import hot
from .advance import Advance
from .base import chunks, retry_conflicts
from .definitions import Definitions
from .execution_row import ExecutionRow
from .guards import FINISHABLE, held, node
from .history import History
from .records import Claim, Dispatch, Outcome
from .schema import nodes as N

node_guard(S.FAILED, *FINISHABLE)
node_guard(S.QUEUED, *FINISHABLE)
node_guard(S.CANCELLED, *FINISHABLE)
# A timer or a parent's wake-up comes twice by design (message and sweep): the second
# finds the node moved on, which is no result of anyone's.
_REPEATABLE = ("timer_fired", "woken")


class Transitions:
    """Claiming, completing, failing and retrying node attempts.

    Args:
        engine: The store's engine.
        payloads: Packs outputs and resolves inputs.
        definitions: The workflows' graphs.
        history: Records every transition.
        row: Takes and ends the execution row.
        advance: Moves the execution on after a node finishes.
        lease_seconds: The lease of a claimed or queued attempt.
    """

    def __init__(
        self,
        engine: Engine,
        payloads: Payloads,
        definitions: Definitions,
        history: History,
        row: ExecutionRow,
        advance: Advance,
        lease_seconds: float,
    ):
        self.engine = engine
        self.payloads = payloads
        self.definitions = definitions
        self.history = history
        self.row = row
        self.advance = advance
        self.lease_seconds = lease_seconds

    @retry_conflicts
    def claim_node(
        self,
        execution_id: str,
        node_id: str,
        attempt: int,
        known: dict[str, str] | None = None,
    ) -> Claim | None:
        """Move a queued node to running for this attempt; None if the message is stale.

        A node of a paused or ended execution is not claimed: the message is dropped and
        resume sends it again. ``known`` holds stored outputs of parents the caller has
        at hand (a thread running a successor inline), which are then not read again.
        """
        now = time.time()
        with self.engine.begin() as conn:
            row = conn.execute(
                hot.CLAIM,
                {
                    "e": execution_id,
                    "n": node_id,
                    "a": attempt,
                    "now": now,
                    "lease": now + self.lease_seconds,
                },
            ).first()
            if row is None:
                return None
            self.history.record_events(conn, [(execution_id, node_id, "started", attempt)])
            meta = self.row.meta(conn, execution_id)
            parents = self.definitions.graph(meta.workflow_id, meta.version, conn).parents[node_id]
            packed: Any
            if known and all(p in known for p in parents):
                packed = {p: known[p] for p in parents}
            elif parents:
                packed = _parent_outputs(conn, execution_id, parents)
            else:
                packed = conn.execute(hot.EXECUTION_INPUT, {"e": execution_id}).scalar_one()
        return Claim(
            execution_id=execution_id,
            node_id=node_id,
            attempt=attempt,
            type=row.type,
            workflow_id=meta.workflow_id,
            version=meta.version,
            tenant=meta.tenant,
            depth=meta.depth,
            input=packed,
            tries=attempt - row.attempt_base,
            lane=row.lane,
            traceparent=meta.traceparent,
            ready_at=max(row.queued_at or now, row.wake_at or 0.0),
        )

    def early_message(self, execution_id: str, node_id: str, attempt: int) -> Dispatch | None:
        """The message to send again when one arrived before its retry backoff ran out.

        None unless the node is queued for ``attempt`` with its wake-up still ahead (a
        duplicate of a delayed message, or one sent without its delay).
        """
        now = time.time()
        with self.engine.connect() as conn:
            row = conn.execute(
                select(N.c.wake_at, N.c.type, N.c.lane).where(
                    node(execution_id, node_id), N.c.status == S.QUEUED, N.c.attempt == attempt
                )
            ).first()
        if row is None or row.wake_at is None or row.wake_at <= now:
            return None
        return Dispatch(execution_id, node_id, attempt, row.type, row.lane, row.wake_at - now)

    def record_stale_result(self, claim: Claim, detail: str) -> None:
        """Keep in the history that a superseded attempt came back; nothing else changes."""
        with self.engine.begin() as conn:
            self.history.record_event(
                conn, claim.execution_id, claim.node_id, "stale_result", claim.attempt, detail
            )

    def node_input(self, claim: Claim) -> Any:
        """Resolve a claim's packed input (blobs are fetched here, outside transactions).

        Raises:
            BlobError: If an offloaded value is missing or corrupted.
        """
        graph = self.definitions.graph(claim.workflow_id, claim.version)
        parents = graph.parents[claim.node_id]
        where = f"execution {claim.execution_id}, node {claim.node_id!r}"
        if not parents:
            return self.payloads.unpack(claim.tenant, claim.input, what=f"input of {where}")
        memo: dict[str, Any] = {}  # parents that returned one stored value share it
        values = {
            parent: self.payloads.unpack(
                claim.tenant, text, what=f"output of parent {parent!r} ({where})", memo=memo
            )
            for parent, text in claim.input.items()
        }
        return values.get(parents[0]) if len(parents) == 1 else values

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

    @retry_conflicts
    def retry_node(
        self, claim: Claim, error: str, delay: float, *, trace: str | None = None
    ) -> Outcome:
        """Queue the next attempt of a node after ``delay`` seconds.

        ``trace`` (a traceback), when given, is kept as the error instead of ``error``.
        """
        error = trace or error
        now = time.time()
        with self.engine.begin() as conn:
            ex = self.row.lock(conn, claim.execution_id, now)
            cancelled = ex.status not in EXECUTION_ACTIVE
            row = conn.execute(
                update(N)
                .where(held(claim))
                .values(
                    status=S.CANCELLED if cancelled else S.QUEUED,
                    attempt=N.c.attempt + (0 if cancelled else 1),
                    error=error,
                    queued_at=now,
                    wake_at=now + delay,
                    lease_until=now + delay + self.lease_seconds,
                    finished_at=now if cancelled else None,
                    child_id=None,
                )
                .returning(N.c.attempt, N.c.type, N.c.lane)
            ).first()
            if row is None:
                return Outcome(applied=False)
            kind = "cancelled" if cancelled else "retrying"
            self.history.record_event(
                conn, claim.execution_id, claim.node_id, kind, claim.attempt, error
            )
            if cancelled:
                return Outcome()
            return Outcome(
                dispatches=[
                    Dispatch(
                        claim.execution_id, claim.node_id, row.attempt, row.type, row.lane, delay
                    )
                ]
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
            if status not in EXECUTION_ACTIVE:
                return Outcome()
            meta = self.row.meta(conn, execution_id)
            graph = self.definitions.graph(meta.workflow_id, meta.version, conn)
            return self.advance.settle(conn, execution_id, graph, now, [(node_id, chosen)], 1)


def _parent_outputs(conn: Connection, execution_id: str, parents: Sequence[str]) -> dict[str, str]:
    return {
        r.node_id: r.output
        for ids in chunks(parents)
        for r in conn.execute(hot.PARENT_OUTPUTS, {"e": execution_id, "ids": ids})
    }
