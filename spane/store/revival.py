"""Revival: an ended execution runs again from its failed and cancelled nodes (replay,
dead-letter retry), its completed work outside them kept."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, select, update

from .. import codec, errors
from ..statuses import NODE_TERMINAL, node_guard
from ..statuses import ExecutionStatus as X
from ..statuses import NodeStatus as S
from .advance import Advance
from .base import chunks, retry_conflicts
from .definitions import Definitions
from .execution_row import ExecutionRow
from .guards import REVIVABLE, REVIVED_FROM
from .history import DEAD_OPEN, DEAD_RETRIED, History
from .records import Outcome
from .schema import dead_letters as D
from .schema import executions as E
from .schema import nodes as N

(_READY,) = node_guard(S.SKIPPED, S.PENDING)
_FINISHED = (S.COMPLETED, S.FAILED, S.SKIPPED)
_WITH_OUTPUT = (S.COMPLETED, S.FAILED)


class Revival:
    """Runs ended executions again.

    Args:
        engine: The store's engine.
        definitions: The workflows' graphs.
        history: Records the revival.
        row: Takes the execution row.
        advance: Queues and skips what became ready.
    """

    def __init__(
        self,
        engine: Engine,
        definitions: Definitions,
        history: History,
        row: ExecutionRow,
        advance: Advance,
    ):
        self.engine = engine
        self.definitions = definitions
        self.history = history
        self.row = row
        self.advance = advance

    @retry_conflicts
    def revive(self, execution_id: str, from_node: str | None = None) -> Outcome:
        """Re-run the failed and cancelled nodes (and ``from_node``) and all below them.

        Under the execution's lock, so the nodes to reset are read in the same state they
        are reset from: those nodes go back to pending, every pending node is recounted,
        what is ready runs. Completed work outside them is kept; the execution moves back
        to ``running``. Used by replay and dead-letter retry.

        Raises:
            InvalidTransition: If the execution has not ended.
        """
        now = time.time()
        with self.engine.begin() as conn:
            ex = self.row.lock(conn, execution_id, now)
            if ex.status not in REVIVED_FROM:
                raise errors.InvalidTransition(
                    f"execution {execution_id} is {ex.status}; only an ended one runs again"
                )
            graph = self.definitions.graph(ex.workflow_id, ex.version, conn)
            current = conn.execute(
                select(N.c.node_id, N.c.status, N.c.output).where(N.c.execution_id == execution_id)
            ).all()
            # A node that failed for good (no output) is re-run too, or nothing below it
            # could run; without from_node, every failed node is.
            reset = {
                r.node_id
                for r in current
                if r.status == S.CANCELLED
                or (r.status == S.FAILED and (from_node is None or r.output is None))
            }
            if from_node is not None:
                reset.add(from_node)
            stack = list(reset)
            while stack:
                for child in graph.children[stack.pop()]:
                    if child not in reset:
                        reset.add(child)
                        stack.append(child)
            for ids in chunks(sorted(reset)):
                conn.execute(
                    update(N)
                    .where(
                        N.c.execution_id == execution_id,
                        N.c.node_id.in_(ids),
                        N.c.status.in_(REVIVABLE),
                    )
                    .values(
                        status=S.PENDING,
                        attempt_base=N.c.attempt,
                        output=None,
                        error=None,
                        route=None,
                        wake_at=None,
                        child_id=None,
                        lease_until=None,
                        started_at=None,
                        finished_at=None,
                    )
                )
            rows = conn.execute(
                select(N.c.node_id, N.c.status, N.c.output, N.c.route).where(
                    N.c.execution_id == execution_id
                )
            ).all()
            state = {r.node_id: r for r in rows}
            ready_run: list[str] = []
            ready_skip: list[str] = []
            for node_id, row in state.items():
                if row.status != S.PENDING:
                    continue
                parents = graph.parents[node_id]
                waiting = sum(1 for p in parents if state[p].status not in _FINISHED)
                live = 1 if not parents else sum(1 for p in parents if _live(state[p], node_id))
                conn.execute(
                    update(N)
                    .where(N.c.execution_id == execution_id, N.c.node_id == node_id)
                    .values(waiting_on=waiting, live_parents=live)
                )
                if waiting == 0:
                    (ready_run if live else ready_skip).append(node_id)
            open_count = sum(1 for r in state.values() if r.status not in NODE_TERMINAL)
            conn.execute(
                update(E)
                .where(E.c.id == execution_id)
                .values(
                    status=X.RUNNING,
                    output=None,
                    error=None,
                    finished_at=None,
                    remaining=open_count,
                )
            )
            self.history.record_event(
                conn, execution_id, None, "revived", None, ",".join(sorted(reset)) or None
            )
            # The dead letters of nodes that run again are settled by this revival.
            for ids in chunks(sorted(reset)):
                conn.execute(
                    update(D)
                    .where(
                        D.c.execution_id == execution_id,
                        D.c.node_id.in_(ids),
                        D.c.status == DEAD_OPEN,
                    )
                    .values(status=DEAD_RETRIED, retried_at=now)
                )
            dispatches = self.advance.queue(conn, execution_id, ready_run, now) if ready_run else []
            for ids in chunks(ready_skip):
                conn.execute(
                    update(N)
                    .where(
                        N.c.execution_id == execution_id,
                        N.c.node_id.in_(ids),
                        N.c.status == _READY,
                    )
                    .values(status=S.SKIPPED, finished_at=now)
                )
            self.history.record_events(
                conn, [(execution_id, n, "skipped", None) for n in ready_skip]
            )
            work: list[tuple[str, set[str] | None]] = [(n, set()) for n in ready_skip]
            outcome = self.advance.settle(conn, execution_id, graph, now, work, len(ready_skip))
            outcome.dispatches[:0] = dispatches
            return outcome


def _live(parent: Any, child: str) -> bool:
    """Whether a finished parent's edge to ``child`` carries its output (not routed away)."""
    if parent.status not in _WITH_OUTPUT or parent.output is None:
        return False
    return parent.route is None or child in codec.loads(parent.route)
