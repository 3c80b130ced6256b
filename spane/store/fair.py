"""Tenant turns in a busy lane: ready nodes wait here and go to the broker in turn.

A held node stays ``queued`` without a lease, like one held for a concurrency slot.
Releases of one lane are taken by one worker at a time (its lock row, skipped when
locked), which also keeps the lane's virtual time; each tenant's next turn is a row of
``spane_admission_tenants``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    String,
    Table,
    delete,
    func,
    insert,
    select,
    tuple_,
    union_all,
    update,
)

from .. import fairness
from ..registry import LANES
from .admission import A, Admitted, L, ensure_locks
from .base import CHUNK, chunks, retry_conflicts
from .records import Dispatch
from .schema import metadata
from .schema import nodes as N

admission_tenants = Table(
    "spane_admission_tenants",
    metadata,
    Column("lane", String(16), primary_key=True),
    Column("tenant", String(64), primary_key=True),
    Column("turn", Float, nullable=False),
)
T = admission_tenants


def _parts(items: list[tuple[Dispatch, str]]) -> list[list[tuple[Dispatch, str]]]:
    return [items[i : i + CHUNK // 3] for i in range(0, len(items), CHUNK // 3)]


def _unlease(conn: Connection, keys: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """Take the lease off queued nodes at these attempts (a waiting node has none, so
    recovery never sends it as lost); return those that were still queued."""
    rows = conn.execute(
        update(N)
        .where(tuple_(N.c.execution_id, N.c.node_id, N.c.attempt).in_(keys), N.c.status == "queued")
        .values(lease_until=None)
        .returning(N.c.execution_id, N.c.node_id, N.c.attempt)
    )
    return [(r[0], r[1], r[2]) for r in rows]


def _tenants(conn: Connection, waiting: tuple[Any, ...]) -> list[str]:
    """The tenants with nodes ``waiting``: one index probe per tenant, where a DISTINCT
    would read every waiting node (tens of thousands, at every release)."""
    found: list[str] = []
    step = select(func.min(A.c.tenant)).where(*waiting)
    tenant = conn.execute(step).scalar()
    while tenant is not None:
        found.append(tenant)
        tenant = conn.execute(step.where(A.c.tenant > tenant)).scalar()
    return found


class Fair:
    """The SQL of tenant turns (see the module docstring).

    Args:
        engine: The database.
        lease: Seconds a released node's message may wait before recovery re-sends it.
    """

    def __init__(self, engine: Engine, lease: float) -> None:
        self.engine = engine
        self.lease = lease

    @retry_conflicts
    def hold(self, items: list[tuple[Dispatch, str]]) -> list[Dispatch]:
        """Keep ready nodes (with their tenant) in the database; return those to send
        anyway (already admitted: a message sent again). A few statements per chunk of
        nodes, however many: a wide fan-out of a busy lane waits here whole."""
        now = time.time()
        send: list[Dispatch] = []
        with self.engine.begin() as conn:
            for part in _parts(items):
                info = {(d.execution_id, d.node_id, d.attempt): (t, d.lane) for d, t in part}
                pairs = [(d.execution_id, d.node_id) for d, _ in part]
                current = {
                    (r.execution_id, r.node_id): r
                    for r in conn.execute(
                        select(A.c.execution_id, A.c.node_id, A.c.attempt, A.c.state).where(
                            tuple_(A.c.execution_id, A.c.node_id).in_(pairs)
                        )
                    )
                }
                fresh, again = [], []
                for d, _ in part:
                    row = current.get((d.execution_id, d.node_id))
                    if row is None or row.attempt != d.attempt:
                        fresh.append((d.execution_id, d.node_id, d.attempt))
                    elif row.state == "admitted":
                        send.append(d)  # a message sent again
                    else:  # still waiting: a resume gave it a lease, which it must not have
                        again.append((d.execution_id, d.node_id, d.attempt))
                if again:
                    _unlease(conn, again)
                held = _unlease(conn, fresh) if fresh else []
                stale = [(e, n) for e, n, _ in held if (e, n) in current]
                if stale:
                    conn.execute(delete(A).where(tuple_(A.c.execution_id, A.c.node_id).in_(stale)))
                if held:
                    conn.execute(
                        insert(A),
                        [
                            {
                                "execution_id": key[0],
                                "node_id": key[1],
                                "attempt": key[2],
                                "tenant": info[key][0],
                                "lane": info[key][1],
                                "kind": "fair",
                                "state": "held",
                                "limits": "[]",
                                "held_since": now,
                            }
                            for key in held
                        ],
                    )
        return send

    def held_lanes(self) -> set[str]:
        """Lanes where nodes wait for their tenant's turn (one index probe per lane,
        however many wait)."""
        probes = [
            select(A.c.lane)
            .where(A.c.lane == lane, A.c.kind == "fair", A.c.state == "held")
            .limit(1)
            .subquery()
            for lane in LANES
        ]
        with self.engine.connect() as conn:
            found = conn.execute(union_all(*(select(p.c.lane) for p in probes)))
            return set(found.scalars())

    @retry_conflicts
    def release(
        self, lane: str, count: int, weight: Callable[[str], float]
    ) -> tuple[list[Dispatch], set[str]] | None:
        """Release up to ``count`` waiting nodes of ``lane`` in weighted turns per tenant.

        Returns the messages to send and the tenants that still have nodes waiting, or
        None when another worker is releasing this lane right now.
        """
        now = time.time()
        name = f"lane:{lane}"
        with self.engine.begin() as conn:
            ensure_locks(conn, [name])
            lock = conn.execute(
                select(L.c.vtime).where(L.c.name == name).with_for_update(skip_locked=True)
            ).first()
            if lock is None:
                return None
            waiting = (A.c.lane == lane, A.c.kind == "fair", A.c.state == "held")
            tenants = _tenants(conn, waiting)
            candidates = {
                tenant: conn.execute(
                    select(A.c.execution_id, A.c.node_id, A.c.attempt)
                    .where(*waiting, A.c.tenant == tenant)
                    .order_by(A.c.held_since, A.c.execution_id, A.c.node_id)
                    .limit(count)
                    .with_for_update(skip_locked=True)
                ).all()
                for tenant in tenants
            }
            turns: dict[str, float] = {
                r.tenant: r.turn
                for r in conn.execute(select(T.c.tenant, T.c.turn).where(T.c.lane == lane))
            }
            available = {t: len(rows) for t, rows in candidates.items()}
            picks, new_turns, vtime = fairness.plan(turns, lock.vtime, available, weight, count)
            # In turn order, not tenant by tenant: the broker runs them first come first
            # served, so a tenant's nodes must not all queue behind another's.
            first = {t: max(turns.get(t, lock.vtime), lock.vtime) for t in picks}
            chosen = [
                tuple(r)
                for _, _, r in sorted(
                    (first[t] + i / weight(t), t, r)
                    for t, k in picks.items()
                    for i, r in enumerate(candidates[t][:k])
                )
            ]
            out: list[Dispatch] = []
            for part in chunks(chosen):  # type: ignore[arg-type]
                conn.execute(
                    delete(A).where(tuple_(A.c.execution_id, A.c.node_id, A.c.attempt).in_(part))
                )
                out += [
                    Admitted(r[0], r[1], r[2], r[3], r[4], max(0.0, (r[5] or 0.0) - now))
                    for r in conn.execute(
                        update(N)
                        .where(
                            tuple_(N.c.execution_id, N.c.node_id, N.c.attempt).in_(part),
                            N.c.status == "queued",
                        )
                        .values(lease_until=now + self.lease)
                        .returning(
                            N.c.execution_id,
                            N.c.node_id,
                            N.c.attempt,
                            N.c.type,
                            N.c.lane,
                            N.c.wake_at,
                        )
                    )
                ]
            place = {key: i for i, key in enumerate(chosen)}
            out.sort(key=lambda d: place[(d.execution_id, d.node_id, d.attempt)])
            for tenant in picks:
                if tenant in turns:
                    conn.execute(
                        update(T)
                        .where(T.c.lane == lane, T.c.tenant == tenant)
                        .values(turn=new_turns[tenant])
                    )
                else:
                    conn.execute(insert(T).values(lane=lane, tenant=tenant, turn=new_turns[tenant]))
            conn.execute(update(L).where(L.c.name == name).values(vtime=vtime))
        left = {t for t, n in available.items() if picks.get(t, 0) < n or n >= count}
        return out, left
