"""Weighted turns between tenants of a busy lane (stride scheduling).

Each tenant has a turn, a virtual time: the tenant with the earliest turn goes next and
its turn moves on by ``1 / weight``, so over a window each backlogged tenant gets a
share of the releases proportional to its weight. A tenant back from idle starts at the
lane's current virtual time: what it did not use while idle is not saved up.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping


def plan(
    turns: Mapping[str, float],
    vtime: float,
    available: Mapping[str, int],
    weight: Callable[[str], float],
    count: int,
) -> tuple[dict[str, int], dict[str, float], float]:
    """Choose how many of ``count`` releases each tenant gets.

    Args:
        turns: Each known tenant's next turn.
        vtime: The lane's virtual time (the turn of the last release).
        available: How many nodes each tenant has waiting.
        weight: A tenant's weight.
        count: Releases to hand out.

    Returns:
        Releases per tenant, every tenant's next turn, and the lane's new virtual time.
    """
    turn = {t: max(turns.get(t, vtime), vtime) for t, n in available.items() if n > 0}
    picks = dict.fromkeys(turn, 0)
    heap = [(at, t) for t, at in turn.items()]
    heapq.heapify(heap)
    while count > 0 and heap:
        at, tenant = heapq.heappop(heap)
        picks[tenant] += 1
        count -= 1
        vtime = at
        turn[tenant] = at + 1.0 / weight(tenant)
        if picks[tenant] < available[tenant]:
            heapq.heappush(heap, (turn[tenant], tenant))
    return picks, turn, vtime
