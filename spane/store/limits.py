"""Concurrency limits: admit a ready node while every limit of it has room, else hold
it; give freed slots to the waiters in the order they came (see ``admission``)."""

from __future__ import annotations

import json
import time

from sqlalchemy import Connection, and_, exists, func, insert, select, update

from ..limits import Limit
from .admission import (
    LIVE,
    A,
    Admitted,
    Arrival,
    K,
    LimitRows,
    queued_at,
    row_of,
)
from .base import retry_conflicts
from .records import EXECUTION_ACTIVE, Dispatch
from .schema import executions as E
from .schema import nodes as N

#: Waiters looked at per key by one pass.
FILL_BATCH = 200


class Limits(LimitRows):
    """The SQL of concurrency limits, beside the ``Store`` whose transactions call it."""

    def _in_use(self, conn: Connection, key: str) -> int:
        return int(
            conn.execute(
                select(func.count())
                .select_from(K)
                .join(A, and_(A.c.execution_id == K.c.execution_id, A.c.node_id == K.c.node_id))
                .join(N, and_(N.c.execution_id == A.c.execution_id, N.c.node_id == A.c.node_id))
                .where(
                    K.c.key == key,
                    A.c.state == "admitted",
                    N.c.attempt == A.c.attempt,
                    N.c.status.in_(LIVE),
                )
            ).scalar_one()
        )

    def _crowd(self, conn: Connection, key: str) -> list[str]:
        """Executions, oldest first, with a live attempt holding or waiting on ``key``."""
        rows = conn.execute(
            select(A.c.execution_id)
            .join(K, and_(A.c.execution_id == K.c.execution_id, A.c.node_id == K.c.node_id))
            .join(N, and_(N.c.execution_id == A.c.execution_id, N.c.node_id == A.c.node_id))
            .join(E, E.c.id == A.c.execution_id)
            .where(
                K.c.key == key,
                N.c.attempt == A.c.attempt,
                N.c.status.in_(LIVE),
                E.c.status.in_(EXECUTION_ACTIVE),
            )
            .order_by(A.c.held_since, A.c.execution_id)
        )
        return list(rows.scalars())

    @retry_conflicts
    def arrive(self, arrivals: list[Arrival]) -> tuple[list[Dispatch], dict[str, str]]:
        """Admit ready nodes under their limits or hold them; return what to send and the
        executions a ``cancel_*`` strategy cancels (id: reason)."""
        now = time.time()
        send: list[Dispatch] = []
        victims: dict[str, str] = {}
        locked: set[str] = set()
        names = sorted({limit.key for a in arrivals for limit in a.limits})
        with self.engine.begin() as conn:
            self.lock(conn, names, locked)
            for arrival in arrivals:
                d = arrival.dispatch
                node = conn.execute(
                    select(N.c.status, N.c.attempt).where(
                        N.c.execution_id == d.execution_id, N.c.node_id == d.node_id
                    )
                ).first()
                if node is None or node.status != "queued" or node.attempt != d.attempt:
                    continue  # a stale message: the node moved on
                row = conn.execute(
                    select(A.c.attempt, A.c.state, A.c.held_since).where(
                        row_of(d.execution_id, d.node_id)
                    )
                ).first()
                if row is not None and row.attempt == d.attempt:
                    if row.state == "admitted":
                        send.append(d)  # sent again (a lost message, a resume)
                    else:  # still waiting: a resume gave it a lease, which it must not have
                        conn.execute(
                            update(N)
                            .where(queued_at(d.execution_id, d.node_id, d.attempt))
                            .values(lease_until=None)
                        )
                    continue
                if row is not None:
                    self.forget(conn, d.execution_id, d.node_id)
                if self._cancels(conn, arrival, victims):
                    continue
                conn.execute(
                    update(N)
                    .where(queued_at(d.execution_id, d.node_id, d.attempt))
                    .values(lease_until=None)
                )
                conn.execute(
                    insert(A).values(
                        execution_id=d.execution_id,
                        node_id=d.node_id,
                        attempt=d.attempt,
                        tenant=arrival.tenant,
                        lane=d.lane,
                        kind="limit",
                        state="held",
                        limits=json.dumps([[x.key, x.max] for x in arrival.limits]),
                        # A node sent again keeps its place in line.
                        held_since=row.held_since if row is not None else now,
                    )
                )
                conn.execute(
                    insert(K),
                    [
                        {"key": x.key, "execution_id": d.execution_id, "node_id": d.node_id}
                        for x in arrival.limits
                    ],
                )
            send += self._fill(conn, names, locked, now)
        return send, victims

    def _cancels(self, conn: Connection, arrival: Arrival, victims: dict[str, str]) -> bool:
        """Apply ``cancel_*`` strategies; True when the arriving execution is cancelled."""
        mine = arrival.dispatch.execution_id
        for limit in arrival.limits:
            if limit.strategy == "queue":
                continue
            crowd = [e for e in self._crowd(conn, limit.key) if e != mine and e not in victims]
            if len(crowd) < limit.max:
                continue
            reason = (
                f"cancelled: concurrency key {limit.key} is at its limit of {limit.max} "
                f"(strategy {limit.strategy})"
            )
            if limit.strategy == "cancel_newest":
                victims[mine] = reason
                return True
            for execution_id in crowd[: len(crowd) - limit.max + 1]:
                victims[execution_id] = reason
        return False

    def _fill(
        self, conn: Connection, names: list[str], locked: set[str], now: float
    ) -> list[Dispatch]:
        """Admit waiters on ``names`` in the order they came while every limit of each has
        room. Each key is first come, first served; a waiter held only by a full key lets
        those behind it use its other keys' free slots (no head-of-line blocking)."""
        if not names:
            return []
        rows = conn.execute(
            select(A.c.execution_id, A.c.node_id, A.c.attempt, A.c.limits)
            .join(E, E.c.id == A.c.execution_id)
            .where(
                A.c.state == "held",
                A.c.kind == "limit",
                E.c.status == "running",
                exists().where(
                    K.c.execution_id == A.c.execution_id,
                    K.c.node_id == A.c.node_id,
                    K.c.key.in_(names),
                ),
            )
            .order_by(A.c.held_since, A.c.execution_id, A.c.node_id)
            .limit(FILL_BATCH)
        ).all()
        in_use: dict[str, int] = {}
        full: set[str] = set()
        out: list[Dispatch] = []
        for r in rows:
            limits = [Limit(key, most) for key, most in json.loads(r.limits)]
            keys = [limit.key for limit in limits]
            if full.intersection(keys):
                continue
            self.lock(conn, keys, locked)
            for key in keys:
                if key not in in_use:
                    in_use[key] = self._in_use(conn, key)
            full.update(x.key for x in limits if in_use[x.key] >= x.max)
            if full.intersection(keys):
                if full.issuperset(names):
                    break
                continue
            got = conn.execute(
                update(N)
                .where(queued_at(r.execution_id, r.node_id, r.attempt))
                .values(lease_until=now + self.lease)
                .returning(N.c.type, N.c.lane, N.c.wake_at)
            ).first()
            if got is None:
                self.forget(conn, r.execution_id, r.node_id)  # the node moved on
                continue
            conn.execute(
                update(A)
                .where(row_of(r.execution_id, r.node_id))
                .values(state="admitted", admitted_at=now)
            )
            for key in keys:
                in_use[key] += 1
            delay = max(0.0, (got.wake_at or 0.0) - now)
            out.append(Admitted(r.execution_id, r.node_id, r.attempt, got.type, got.lane, delay))
        return out

    def ended(self, conn: Connection, execution_id: str, node_id: str) -> list[Dispatch]:
        """A node just ended in ``conn``'s transaction: give its slot to the next waiters.

        No statement unless a limit covers the node.
        """
        meta = self.row.meta(conn, execution_id)
        graph = self.definitions.graph(meta.workflow_id, meta.version, conn)
        if not self.rules.applies(graph, node_id, meta.tenant):
            return []
        row = conn.execute(
            select(A.c.state, A.c.limits).where(row_of(execution_id, node_id))
        ).first()
        if row is None:
            return []
        self.forget(conn, execution_id, node_id)
        if row.state != "admitted":
            return []
        names = sorted(key for key, _ in json.loads(row.limits))
        locked: set[str] = set()
        self.lock(conn, names, locked)
        return self._fill(conn, names, locked, time.time())

    @retry_conflicts
    def fill(self, names: list[str] | None = None) -> list[Dispatch]:
        """Admit waiters on ``names`` (None: every key someone waits on), after slots
        came free outside a node's own end (a cancelled or failed execution)."""
        with self.engine.begin() as conn:
            if names is None:
                names = sorted(
                    conn.execute(
                        select(K.c.key)
                        .join(
                            A,
                            and_(A.c.execution_id == K.c.execution_id, A.c.node_id == K.c.node_id),
                        )
                        .where(A.c.state == "held", A.c.kind == "limit")
                        .distinct()
                    ).scalars()
                )
            locked: set[str] = set()
            self.lock(conn, names, locked)
            return self._fill(conn, names, locked, time.time())
