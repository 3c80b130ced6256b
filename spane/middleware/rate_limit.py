"""``RateLimits``: at most so many attempts per window, counted across every worker.

Dramatiq's ``WindowRateLimiter`` counts attempts in one-second buckets on a backend every
worker shares (``shared_state.py``); its non-blocking ``acquire`` lets an attempt over the
limit be deferred to the next window instead of holding a worker thread.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from dramatiq import Broker
from dramatiq.rate_limits import WindowRateLimiter

from .. import registry
from ..context import Defer
from ..protection import RateLimit
from .attempts import Attempt, AttemptMiddleware
from .circuit_breaker import name_for

if TYPE_CHECKING:
    from ..definitions import Graph
    from .shared_state import SharedState


class RateLimits(AttemptMiddleware):
    """Defers an attempt whose rate limit is used up to the next window.

    Args:
        shared: Where the counts live (Redis, the database, or memory).
        graph: Returns the graph of a workflow version (node declarations win over types).
        namespace: Prefix of the counters' keys (``SPANE_NAMESPACE``).
    """

    def __init__(
        self, shared: SharedState, graph: Callable[[str, int], Graph], namespace: str
    ) -> None:
        self.shared = shared
        self._graph = graph
        self._prefix = f"{namespace}:rate"

    def before_attempt(self, broker: Broker, attempt: Attempt) -> None:
        node = self._graph(attempt.workflow_id, attempt.version).nodes[attempt.node_id]
        node_type = registry.get(attempt.node_type)
        spec: RateLimit | None = node.rate_limit or (node_type.rate_limit if node_type else None)
        if spec is None:
            return
        name = name_for(attempt, spec.key)
        limiter = WindowRateLimiter(  # type: ignore[no-untyped-call]
            self.shared.rate_backend, f"{self._prefix}:{name}", limit=spec.limit, window=spec.window
        )
        with limiter.acquire(raise_on_failure=False) as acquired:
            if acquired:
                return
        # The oldest one-second bucket leaves the window at the next whole second. Spread
        # the deferred nodes over part of the window so they do not all come back at once.
        until = math.floor(time.time()) + 1 + random.uniform(0, spec.window / 2)
        raise Defer(until, f"rate limit {name} ({spec.limit} per {spec.per}) reached")
