"""Recovery: leases, fencing, hand-back, revival, and the sweeper's lock.

The broker is only transport: whatever it loses is found here, by lease, and sent
again. A superseded attempt (fenced by its attempt number) can no longer change state.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import insert, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from .base import chunks, retry_conflicts
from .parking import Parking
from .records import EXECUTION_ACTIVE, EXECUTION_TERMINAL, Claim, Dispatch, Outcome, Overdue
from .schema import dead_letters as D
from .schema import executions as E
from .schema import locks as L
from .schema import nodes as N
from .transitions import _held


class Recovery(Parking):
    """Mixin of ``Store`` holding lease and recovery operations."""

    def take_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take or renew the named cluster-wide lease; False if another holder has it.

        A lease, not a session lock: a holder that stalls or is cut off loses it after
        ``seconds``, and another worker takes over.
        """
        now = time.time()
        with self.engine.begin() as conn:
            done = conn.execute(
                update(L)
                .where(L.c.name == name, or_(L.c.until < now, L.c.holder == holder))
                .values(holder=holder, until=now + seconds)
            )
            if done.rowcount:
                return True
            if conn.execute(select(L.c.name).where(L.c.name == name)).first() is not None:
                return False
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(L).values(name=name, holder=holder, until=now + seconds))
        except IntegrityError:
            return False
        return True

    def release_lease(self, name: str, holder: str) -> None:
        """Give the named lease up if ``holder`` has it."""
        with self.engine.begin() as conn:
            conn.execute(update(L).where(L.c.name == name, L.c.holder == holder).values(until=0.0))

    @retry_conflicts
    def renew_leases(self, keys: list[tuple[str, str, int]]) -> None:
        """Extend the lease of attempts this process holds (heartbeat).

        ``keys`` are ``(execution_id, node_id, attempt)`` of attempts this process runs
        and of node messages it has taken from the broker but not run yet. A lease is
        never shortened (a retry waiting for its backoff keeps its later lease).
        """
        if not keys:
            return
        until = time.time() + self.lease_seconds
        with self.engine.begin() as conn:
            # The attempt is part of the key: a superseded attempt's heartbeat must not
            # extend the lease of the attempt that replaced it.
            conn.execute(
                update(N)
                .where(
                    tuple_(N.c.execution_id, N.c.node_id, N.c.attempt).in_(keys),
                    N.c.status.in_(("queued", "running")),
                    or_(N.c.lease_until.is_(None), N.c.lease_until < until),
                )
                .values(lease_until=until)
            )

    @retry_conflicts
    def hand_back(self, claim: Claim, reason: str) -> Dispatch | None:
        """Give a running attempt back to the queue as a new attempt; None if stale."""
        now = time.time()
        with self.engine.begin() as conn:
            row = conn.execute(
                update(N)
                .where(_held(claim))
                .values(
                    status="queued",
                    attempt=N.c.attempt + 1,
                    attempt_base=N.c.attempt_base + 1,
                    error=reason,
                    queued_at=now,
                    lease_until=now + self.lease_seconds,
                )
                .returning(N.c.attempt, N.c.type, N.c.lane)
            ).first()
            self.record_event(
                conn, claim.execution_id, claim.node_id, "handed_back", claim.attempt, reason
            ) if row else None
        if row is None:
            return None
        return Dispatch(claim.execution_id, claim.node_id, row.attempt, row.type, row.lane)

    @retry_conflicts
    def recover_lost(self, now: float, limit: int = 500) -> list[Dispatch]:
        """Supersede attempts whose worker stopped heartbeating; close ended executions' nodes.

        A running node past its lease lost its worker: it is fenced off (its attempt
        number moves on) and a new attempt is queued. Queued and running nodes of ended
        executions are closed as cancelled. Queued nodes past their lease are left to
        ``overdue_queued``: only the broker can tell a lost message from a waiting one.
        """
        with self.engine.begin() as conn:
            ended = select(E.c.id).where(E.c.status.in_(EXECUTION_TERMINAL))
            conn.execute(
                update(N)
                .where(
                    N.c.status.in_(("queued", "running")),
                    N.c.lease_until < now,
                    N.c.execution_id.in_(ended),
                )
                .values(status="cancelled", finished_at=now, lease_until=None)
            )
            active = select(E.c.id).where(E.c.status.in_(EXECUTION_ACTIVE))
            lost_workers = self._expired(conn, "running", active, now, limit)
            rows = conn.execute(
                update(N)
                .where(tuple_(N.c.execution_id, N.c.node_id).in_(lost_workers))
                .values(
                    status="queued",
                    attempt=N.c.attempt + 1,
                    error="the previous attempt's worker stopped responding (lease expired)",
                    queued_at=now,
                    lease_until=now + self.lease_seconds,
                )
                .returning(N.c.execution_id, N.c.node_id, N.c.attempt, N.c.type, N.c.lane)
            ).all()
            for r in rows:
                self.record_event(conn, r[0], r[1], "lease_expired", r[2] - 1, None)
        return [Dispatch(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def overdue_queued(self, now: float, limit: int = 500) -> list[Overdue]:
        """Queued nodes of running executions whose lease ran out, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    N.c.execution_id,
                    N.c.node_id,
                    N.c.attempt,
                    N.c.type,
                    N.c.lane,
                    N.c.queued_at,
                    N.c.wake_at,
                )
                .join(E, E.c.id == N.c.execution_id)
                .where(N.c.status == "queued", N.c.lease_until < now, E.c.status == "running")
                .order_by(N.c.lease_until)
                .limit(limit)
            ).all()
        return [
            Overdue(
                Dispatch(r.execution_id, r.node_id, r.attempt, r.type, r.lane),
                max(r.queued_at or 0.0, r.wake_at or 0.0),
            )
            for r in rows
        ]

    @retry_conflicts
    def extend_queued(self, dispatches: list[Dispatch], now: float) -> list[Dispatch]:
        """Give queued nodes a new lease; return those still queued at that attempt."""
        if not dispatches:
            return []
        keys = [(d.execution_id, d.node_id, d.attempt) for d in dispatches]
        with self.engine.begin() as conn:
            rows = conn.execute(
                update(N)
                .where(
                    tuple_(N.c.execution_id, N.c.node_id, N.c.attempt).in_(keys),
                    N.c.status == "queued",
                )
                .values(lease_until=now + self.lease_seconds)
                .returning(N.c.execution_id, N.c.node_id, N.c.attempt)
            ).all()
        still = {(r[0], r[1], r[2]) for r in rows}
        return [d for d in dispatches if (d.execution_id, d.node_id, d.attempt) in still]

    def _expired(
        self, conn: Any, status: str, executions: Any, now: float, limit: int
    ) -> list[tuple[str, str]]:
        rows = conn.execute(
            select(N.c.execution_id, N.c.node_id)
            .where(
                N.c.status == status,
                N.c.lease_until < now,
                N.c.execution_id.in_(executions),
            )
            .limit(limit)
        )
        return [(r.execution_id, r.node_id) for r in rows]

    def queued_everywhere(self, limit: int = 10_000) -> list[Dispatch]:
        """Messages for every queued node of every running execution (embedded start)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(N.c.execution_id, N.c.node_id, N.c.attempt, N.c.type, N.c.lane)
                .join(E, E.c.id == N.c.execution_id)
                .where(N.c.status == "queued", E.c.status == "running")
                .limit(limit)
            ).all()
        return [Dispatch(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def queued_nodes(self, execution_id: str) -> list[Dispatch]:
        """Messages for every queued node of an execution (resume sends them again)."""
        now = time.time()
        with self.engine.begin() as conn:
            rows = conn.execute(
                update(N)
                .where(N.c.execution_id == execution_id, N.c.status == "queued")
                .values(lease_until=now + self.lease_seconds)
                .returning(N.c.node_id, N.c.attempt, N.c.type, N.c.lane, N.c.wake_at)
            ).all()
        return [
            Dispatch(
                execution_id,
                r.node_id,
                r.attempt,
                r.type,
                r.lane,
                max(0.0, (r.wake_at or 0.0) - now),
            )
            for r in rows
        ]

    @retry_conflicts
    def revive(self, execution_id: str, from_node: str | None = None) -> Outcome:
        """Re-run the failed and cancelled nodes (and ``from_node``) and all below them.

        Under the execution's lock, so the nodes to reset are read in the same state they
        are reset from: those nodes go back to pending, every pending node is recounted,
        what is ready runs. Completed work outside them is kept; the execution moves back
        to ``running``. Used by replay and dead-letter retry.
        """
        now = time.time()
        with self.engine.begin() as conn:
            ex = self._lock_execution(conn, execution_id, now)
            graph = self.graph(ex.workflow_id, ex.version, conn)
            current = conn.execute(
                select(N.c.node_id, N.c.status, N.c.output).where(N.c.execution_id == execution_id)
            ).all()
            # A node that failed for good (no output) is re-run too, or nothing below it
            # could run; without from_node, every failed node is.
            reset = {
                r.node_id
                for r in current
                if r.status == "cancelled"
                or (r.status == "failed" and (from_node is None or r.output is None))
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
                    .where(N.c.execution_id == execution_id, N.c.node_id.in_(ids))
                    .values(
                        status="pending",
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
            finished = ("completed", "failed", "skipped")
            ready_run: list[str] = []
            ready_skip: list[str] = []
            for node_id, row in state.items():
                if row.status != "pending":
                    continue
                parents = graph.parents[node_id]
                waiting = sum(1 for p in parents if state[p].status not in finished)
                live = (
                    1
                    if not parents
                    else sum(1 for p in parents if self._live_edge(state[p], node_id))
                )
                conn.execute(
                    update(N)
                    .where(N.c.execution_id == execution_id, N.c.node_id == node_id)
                    .values(waiting_on=waiting, live_parents=live)
                )
                if waiting == 0:
                    (ready_run if live else ready_skip).append(node_id)
            open_count = sum(
                1
                for r in state.values()
                if r.status not in ("completed", "failed", "skipped", "cancelled")
            )
            conn.execute(
                update(E)
                .where(E.c.id == execution_id)
                .values(
                    status="running",
                    output=None,
                    error=None,
                    finished_at=None,
                    remaining=open_count,
                )
            )
            self.record_event(
                conn, execution_id, None, "revived", None, ",".join(sorted(reset)) or None
            )
            # The dead letters of nodes that run again are settled by this revival.
            for ids in chunks(sorted(reset)):
                conn.execute(
                    update(D)
                    .where(
                        D.c.execution_id == execution_id,
                        D.c.node_id.in_(ids),
                        D.c.status == "open",
                    )
                    .values(status="retried", retried_at=now)
                )
            dispatches = self._queue(conn, execution_id, ready_run, now) if ready_run else []
            for ids in chunks(ready_skip):
                conn.execute(
                    update(N)
                    .where(N.c.execution_id == execution_id, N.c.node_id.in_(ids))
                    .values(status="skipped", finished_at=now)
                )
            self.record_events(conn, [(execution_id, n, "skipped", None) for n in ready_skip])
            work: list[tuple[str, set[str] | None]] = [(n, set()) for n in ready_skip]
            outcome = self._settle(conn, execution_id, graph, now, work, len(ready_skip))
            outcome.dispatches[:0] = dispatches
            return outcome

    @staticmethod
    def _live_edge(parent: Any, child: str) -> bool:
        if parent.status not in ("completed", "failed") or parent.output is None:
            return False
        if parent.route is None:
            return True
        from .. import codec

        return child in codec.loads(parent.route)
