"""What operators look at: the live-worker registry and the counts behind the gauges.

Every query here reads a bounded set of rows (live work, open dead letters, workers),
through the status indexes, so a scrape costs a few index scans however long the
history kept in the database is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Engine, delete, func, insert, select, update

from ..statuses import EXECUTION_ACTIVE
from ..statuses import NodeStatus as S
from .history import DEAD_OPEN
from .schema import dead_letters as D
from .schema import executions as E
from .schema import nodes as N
from .schema import workers as K


@dataclass(frozen=True)
class WorkerInfo:
    """One live worker process, as it last reported itself.

    Attributes:
        lanes: The lanes whose queues it consumes.
        node_types: The node types it can run.
        threads: Its worker threads.
        inflight: Node attempts it was running at its last heartbeat.
        heartbeat_at: When it last reported (epoch seconds).
    """

    id: str
    host: str
    pid: int
    version: str
    lanes: tuple[str, ...]
    node_types: tuple[str, ...]
    threads: int
    inflight: int
    draining: bool
    started_at: float
    heartbeat_at: float


@dataclass(frozen=True)
class WorkState:
    """Counts of live work at one moment, for gauges.

    Attributes:
        ready: ``{(lane, tenant): n}`` of nodes queued and due but not yet started.
        executions: ``{status: n}`` of running and paused executions.
        dead_letters: Open dead letters.
    """

    ready: dict[tuple[str, str], int]
    executions: dict[str, int]
    dead_letters: int


class Operations:
    """The worker registry and the operators' counts (a part of the store, built with its engine).

    Args:
        engine: The store's engine.
    """

    def __init__(self, engine: Engine):
        self.engine = engine

    def register_worker(self, info: WorkerInfo) -> None:
        """Insert (or replace) a worker's row when it starts."""
        row = _row(info)
        with self.engine.begin() as conn:
            conn.execute(delete(K).where(K.c.id == info.id))
            conn.execute(insert(K).values(**row))

    def heartbeat_worker(
        self, worker_id: str, *, inflight: int, draining: bool, lease: float
    ) -> bool:
        """Renew a worker's row and drop rows whose lease ran out; False if ours was gone."""
        now = time.time()
        with self.engine.begin() as conn:
            done = conn.execute(
                update(K)
                .where(K.c.id == worker_id)
                .values(inflight=inflight, draining=draining, heartbeat_at=now)
            )
            conn.execute(delete(K).where(K.c.heartbeat_at < now - lease))
        return bool(done.rowcount)

    def unregister_worker(self, worker_id: str) -> None:
        """Remove a worker's row when it stops."""
        with self.engine.begin() as conn:
            conn.execute(delete(K).where(K.c.id == worker_id))

    def live_workers(self, lease: float) -> list[WorkerInfo]:
        """Return workers heard from within ``lease`` seconds, by host and pid."""
        query = (
            select(K)
            .where(K.c.heartbeat_at >= time.time() - lease)
            .order_by(K.c.host, K.c.pid, K.c.id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            WorkerInfo(
                id=r.id,
                host=r.host,
                pid=r.pid,
                version=r.version,
                lanes=_split(r.lanes),
                node_types=_split(r.node_types),
                threads=r.threads,
                inflight=r.inflight,
                draining=bool(r.draining),
                started_at=r.started_at,
                heartbeat_at=r.heartbeat_at,
            )
            for r in rows
        ]

    def work_state(self) -> WorkState:
        """Count live work: due queued nodes by lane and tenant, active executions by
        status, and open dead letters."""
        now = time.time()
        by_lane_tenant = (N.c.lane, E.c.tenant)
        ready = (
            select(N.c.lane, E.c.tenant, func.count())
            .join(E, E.c.id == N.c.execution_id)
            .where(N.c.status == S.QUEUED, func.coalesce(N.c.wake_at, 0) <= now)
            .group_by(*by_lane_tenant)
        )
        executions = (
            select(E.c.status, func.count())
            .where(E.c.status.in_(EXECUTION_ACTIVE))
            .group_by(E.c.status)
        )
        letters = select(func.count()).select_from(D).where(D.c.status == DEAD_OPEN)
        with self.engine.connect() as conn:
            return WorkState(
                ready={(r[0], r[1]): r[2] for r in conn.execute(ready)},
                executions={r[0]: r[1] for r in conn.execute(executions)},
                dead_letters=conn.execute(letters).scalar_one(),
            )


def _row(info: WorkerInfo) -> dict[str, object]:
    return {
        "id": info.id,
        "host": info.host,
        "pid": info.pid,
        "version": info.version,
        "lanes": ",".join(info.lanes),
        "node_types": ",".join(info.node_types),
        "threads": info.threads,
        "inflight": info.inflight,
        "draining": info.draining,
        "started_at": info.started_at,
        "heartbeat_at": info.heartbeat_at,
    }


def _split(text: str) -> tuple[str, ...]:
    return tuple(t for t in text.split(",") if t)
