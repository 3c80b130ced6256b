"""Live workers: every worker process that heartbeats in the database. Workers serve all
tenants, so any token may list them."""

from __future__ import annotations

import msgspec

from ...store import WorkerInfo
from ...workers import workers as live_workers
from ..routing import Call, Operation


class WorkerOut(msgspec.Struct):
    """A worker process as it last reported itself (times in Unix seconds)."""

    id: str
    host: str
    pid: int
    version: str
    lanes: list[str]
    node_types: list[str]
    threads: int
    inflight: int
    draining: bool
    started_at: float
    heartbeat_at: float


class WorkerList(msgspec.Struct):
    """Live workers; one that stops heartbeating drops off after its lease."""

    items: list[WorkerOut]


def _out(info: WorkerInfo) -> WorkerOut:
    return msgspec.convert(info, WorkerOut, from_attributes=True)


def list_(call: Call) -> WorkerList:
    return WorkerList([_out(w) for w in live_workers()])


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
