"""Node types that record when their code ran, to check concurrency limits from outside.

Each attempt records ``(start, end, execution_id, input)``: in this process's memory, or,
with ``record`` in its config (worker subprocesses), on that Redis list.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from typing import Any

import redis

import spane

REDIS_URL = "redis://127.0.0.1:6379/0"
_lock = threading.Lock()
_runs: dict[str, list[tuple[float, float, str, Any]]] = defaultdict(list)


def _tracked(ctx: spane.NodeContext) -> Any:
    start = time.time()
    time.sleep(float(ctx.config.get("seconds", 0.05)))
    run = (start, time.time(), ctx.execution_id, ctx.input)
    record = ctx.config.get("record")
    if record:
        client = redis.Redis.from_url(REDIS_URL)
        client.rpush(str(record), json.dumps(run))
        client.close()
    else:
        with _lock:
            _runs[str(ctx.config.get("group", ""))].append(run)
    return ctx.input


spane.node_type("tracked")(_tracked)
spane.node_type("tracked_capped", max_concurrency=2)(_tracked)


def runs(group: str = "", record: str = "") -> list[tuple[float, float, str, Any]]:
    """The recorded attempts of ``group`` (in memory) or of the Redis list ``record``."""
    if record:
        client = redis.Redis.from_url(REDIS_URL)
        items = [tuple(json.loads(x)) for x in client.lrange(record, 0, -1)]
        client.close()
        return items  # type: ignore[return-value]
    with _lock:
        return list(_runs[group])


def most_at_once(runs: list[tuple[float, float, str, Any]]) -> int:
    """The most attempts whose code ran at the same moment."""
    edges = sorted([(r[0], 1) for r in runs] + [(r[1], -1) for r in runs])
    now = most = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        now += step
        most = max(most, now)
    return most
