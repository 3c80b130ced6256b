"""The load on each lane, per tenant: nodes ready, nodes in flight, nodes waiting on a
concurrency limit, and how long the oldest of those waiting has waited.

Each count is one grouped query over live nodes (through the status index), returning
``{(lane, tenant): (count, waiting since)}``; ``lane_load`` merges them. Another kind of
waiting work is one more query in ``_COUNTS`` and one more field of ``LaneLoad``; its
``waiting since`` then counts toward the oldest wait.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, Engine, and_, case, exists, func, null, select

from ..registry import LANES
from ..statuses import NodeStatus
from .admission import admission as A
from .schema import executions as E
from .schema import nodes as N


@dataclass(frozen=True)
class LaneLoad:
    """One tenant's work on one lane at one moment.

    Attributes:
        ready: Nodes queued and due, not yet started (those waiting their tenant's turn in
            a busy lane included).
        in_flight: Nodes running now.
        limited: Nodes ready but waiting in the database for a concurrency slot.
        oldest_wait: Seconds the longest-waiting ready or limited node has been due; None
            if none is.
    """

    lane: str
    tenant: str
    ready: int = 0
    in_flight: int = 0
    limited: int = 0
    oldest_wait: float | None = None


Counts = dict[tuple[str, str], tuple[int, float | None]]


def _grouped(conn: Connection, where: list[Any], since: Any, tenant: str | None) -> Counts:
    if tenant is not None:
        where = [*where, E.c.tenant == tenant]
    query = (
        select(N.c.lane, E.c.tenant, func.count(), since)
        .join(E, E.c.id == N.c.execution_id)
        .where(*where)
        .group_by(N.c.lane, E.c.tenant)
    )
    return {(r[0], r[1]): (r[2], r[3]) for r in conn.execute(query)}


def _ready(conn: Connection, now: float, tenant: str | None) -> Counts:
    due = func.coalesce(N.c.wake_at, 0.0)
    # A node is due from when it was queued, or from the end of its retry delay.
    due_since = case((due > func.coalesce(N.c.queued_at, 0.0), due), else_=N.c.queued_at)
    where = [N.c.status == NodeStatus.QUEUED, due <= now, ~_held_for_a_limit()]
    return _grouped(conn, where, func.min(due_since), tenant)


def _held_for_a_limit() -> Any:
    return exists().where(
        and_(
            A.c.execution_id == N.c.execution_id,
            A.c.node_id == N.c.node_id,
            A.c.attempt == N.c.attempt,
            A.c.kind == "limit",
            A.c.state == "held",
        )
    )


def _limited(conn: Connection, now: float, tenant: str | None) -> Counts:
    where = [N.c.status == NodeStatus.QUEUED, _held_for_a_limit()]
    return _grouped(conn, where, func.min(N.c.queued_at), tenant)


def _in_flight(conn: Connection, now: float, tenant: str | None) -> Counts:
    # Running nodes are not waiting: they add nothing to the oldest wait.
    return _grouped(conn, [N.c.status == NodeStatus.RUNNING], null(), tenant)


#: ``LaneLoad`` field ← the query that counts it.
_COUNTS: dict[str, Callable[[Connection, float, str | None], Counts]] = {
    "ready": _ready,
    "in_flight": _in_flight,
    "limited": _limited,
}


def lane_load(engine: Engine, now: float, tenant: str | None = None) -> list[LaneLoad]:
    """Return the load of every (lane, tenant) with work, lanes in priority order.

    Args:
        engine: The database.
        now: The moment waits are measured to (epoch seconds).
        tenant: Only this tenant's work; None for every tenant's.
    """
    loads: dict[tuple[str, str], LaneLoad] = {}
    with engine.connect() as conn:
        for name, count in _COUNTS.items():
            for (lane, who), (n, since) in count(conn, now, tenant).items():
                load = loads.get((lane, who)) or LaneLoad(lane, who)
                changes: dict[str, Any] = {name: n}
                if since is not None:
                    wait = max(0.0, now - since)
                    changes["oldest_wait"] = max(wait, load.oldest_wait or 0.0)
                loads[(lane, who)] = replace(load, **changes)
    order = {lane: i for i, lane in enumerate(LANES)}
    return sorted(loads.values(), key=lambda x: (order.get(x.lane, len(order)), x.tenant))
