"""Live workers: every worker process that heartbeats in the database. Workers serve all
tenants, so any token may list them."""

from __future__ import annotations

import msgspec

from ...store import WorkerInfo
from ...workers import workers as live_workers
from ..routing import Call, Operation


class WorkerList(msgspec.Struct):
    """Live workers; one that stops heartbeating drops off after its lease."""

    items: list[WorkerInfo]


def list_(call: Call) -> WorkerList:
    return WorkerList(list(live_workers()))


OPERATIONS = [
    Operation(
        "GET",
        "/workers",
        "listWorkers",
        "Live worker processes: lanes and node types served, threads, in-flight attempts",
        list_,
        "workers",
        response=WorkerList,
    ),
]
