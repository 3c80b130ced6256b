"""Recovery: leases, fencing, and the sweeper's lease.

The broker is only transport: whatever it loses is found here, by lease, and sent
again. A superseded attempt (fenced by its attempt number) can no longer change state.
"""

from __future__ import annotations

import time

from sqlalchemy import Engine, insert, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from ..statuses import EXECUTION_ACTIVE, EXECUTION_TERMINAL, node_guard
from ..statuses import ExecutionStatus as X
from ..statuses import NodeStatus as S
from .base import retry_conflicts
from .guards import LEASED
from .history import History
from .records import Dispatch, Overdue
from .schema import executions as E
from .schema import locks as L
from .schema import nodes as N

(_LOST,) = node_guard(S.QUEUED, S.RUNNING)


class Recovery:
    """Leases of attempts and of the sweeper, and what recovery re-sends.

    Args:
        engine: The store's engine.
        history: Records hand-backs and expired leases.
        lease_seconds: How long an attempt may go without a heartbeat.
    """

    def __init__(self, engine: Engine, history: History, lease_seconds: float):
        self.engine = engine
        self.history = history
        self.lease_seconds = lease_seconds

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
                    N.c.status.in_(LEASED),
                    or_(N.c.lease_until.is_(None), N.c.lease_until < until),
                )
                .values(lease_until=until)
            )

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
                    N.c.status.in_(LEASED),
                    N.c.lease_until < now,
                    N.c.execution_id.in_(ended),
                )
                .values(status=S.CANCELLED, finished_at=now, lease_until=None)
            )
            active = select(E.c.id).where(E.c.status.in_(EXECUTION_ACTIVE))
            lost_workers = conn.execute(
                select(N.c.execution_id, N.c.node_id)
                .where(
                    N.c.status == _LOST,
                    N.c.lease_until < now,
                    N.c.execution_id.in_(active),
                )
                .limit(limit)
            ).all()
            rows = conn.execute(
                update(N)
                .where(
                    tuple_(N.c.execution_id, N.c.node_id).in_([tuple(r) for r in lost_workers]),
                    N.c.status == _LOST,
                )
                .values(
                    status=S.QUEUED,
                    attempt=N.c.attempt + 1,
                    error="the previous attempt's worker stopped responding (lease expired)",
                    queued_at=now,
                    lease_until=now + self.lease_seconds,
                )
                .returning(N.c.execution_id, N.c.node_id, N.c.attempt, N.c.type, N.c.lane)
            ).all()
            for r in rows:
                self.history.record_event(conn, r[0], r[1], "lease_expired", r[2] - 1, None)
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
                .where(N.c.status == S.QUEUED, N.c.lease_until < now, E.c.status == X.RUNNING)
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
                    N.c.status == S.QUEUED,
                )
                .values(lease_until=now + self.lease_seconds)
                .returning(N.c.execution_id, N.c.node_id, N.c.attempt)
            ).all()
        still = {(r[0], r[1], r[2]) for r in rows}
        return [d for d in dispatches if (d.execution_id, d.node_id, d.attempt) in still]

    def queued_everywhere(self, limit: int = 10_000) -> list[Dispatch]:
        """Messages for every queued node of every running execution (embedded start)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(N.c.execution_id, N.c.node_id, N.c.attempt, N.c.type, N.c.lane)
                .join(E, E.c.id == N.c.execution_id)
                .where(N.c.status == S.QUEUED, E.c.status == X.RUNNING)
                .limit(limit)
            ).all()
        return [Dispatch(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def queued_nodes(self, execution_id: str) -> list[Dispatch]:
        """Messages for every queued node of an execution (resume sends them again)."""
        now = time.time()
        with self.engine.begin() as conn:
            rows = conn.execute(
                update(N)
                .where(N.c.execution_id == execution_id, N.c.status == S.QUEUED)
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
