"""Lanes: each lane's work per tenant and the workers serving it. A tenant token sees its
own tenant's work only; the workers are everyone's, as on ``/workers``."""

from __future__ import annotations

import msgspec

from ...lanes import Lane, lanes
from ..routing import Call, Operation
from . import scope


class TenantLoadOut(msgspec.Struct):
    """One tenant's work on a lane: nodes ready (queued and due), nodes running, nodes
    waiting for a concurrency slot, and the seconds the longest-waiting of the ready and
    waiting nodes has been due (null when none is)."""

    tenant: str
    ready: int
    in_flight: int
    limited: int
    oldest_wait: float | None


class LaneOut(msgspec.Struct):
    """A lane: the live workers consuming its queue, their threads, and its tenants' work."""

    lane: str
    workers: int
    threads: int
    tenants: list[TenantLoadOut]


class LaneList(msgspec.Struct):
    """Every lane, most urgent first."""

    items: list[LaneOut]


class LaneQuery(msgspec.Struct):
    """Whose work to count; a tenant token may only name its own tenant."""

    tenant: str | None = None


def _out(lane: Lane) -> LaneOut:
    return msgspec.convert(lane, LaneOut, from_attributes=True)


def list_(call: Call) -> LaneList:
    q: LaneQuery = call.query
    return LaneList([_out(lane) for lane in lanes(scope.tenant(call, q.tenant))])


OPERATIONS = [
    Operation(
        "GET",
        "/lanes",
        "listLanes",
        "Per lane and tenant: nodes ready, in flight, waiting on a limit, and the oldest wait",
        list_,
        "lanes",
        query=LaneQuery,
        response=LaneList,
    ),
]
