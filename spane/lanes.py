"""The lanes as operators look at them: each lane's work per tenant, and the live workers
that serve it (a lane with ready work and no worker never drains)."""

from __future__ import annotations

from dataclasses import dataclass

from . import runtime
from .registry import LANES
from .store import LaneLoad


@dataclass(frozen=True)
class Lane:
    """One lane now.

    Attributes:
        workers: Live worker processes consuming the lane's queue.
        threads: Their worker threads, together.
        tenants: The work of each tenant that has some on the lane.
    """

    lane: str
    workers: int
    threads: int
    tenants: list[LaneLoad]


def lanes(tenant: str | None = None) -> list[Lane]:
    """Return every lane, most urgent first, with its load and the workers serving it.

    Args:
        tenant: Only this tenant's work; None for every tenant's.
    """
    rt = runtime.get()
    loads = rt.store.lane_load(tenant)
    live = rt.store.live_workers(rt.settings.worker_lease_seconds)
    return [
        Lane(
            lane=lane,
            workers=sum(1 for w in live if lane in w.lanes),
            threads=sum(w.threads for w in live if lane in w.lanes),
            tenants=[load for load in loads if load.lane == lane],
        )
        for lane in LANES
    ]
