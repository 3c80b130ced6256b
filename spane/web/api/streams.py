"""Server-sent events: an execution's node changes, and the executions list.

Both poll the database (cheap queries without payloads) and send only what changed, so any
number of web processes can serve streams with nothing shared between them but the store.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import msgspec

from ... import runtime
from ...statuses import EXECUTION_TERMINAL
from ...store import ExecutionSummary
from ...store.browse import NodeRow
from ..routing import Call, Operation
from . import scope
from .executions import ExecutionQuery

#: Seconds between two polls of the database, and between keep-alive comments.
POLL = 0.5
KEEPALIVE = 15.0


def event(kind: str, data: Any) -> str:
    """Return one server-sent event."""
    return f"event: {kind}\ndata: {msgspec.json.encode(data).decode()}\n\n"


def _snapshot(execution_id: str) -> tuple[ExecutionSummary, list[NodeRow]]:
    store = runtime.get().store
    return store.summary(execution_id), store.browse.node_rows(execution_id)


async def _execution_events(execution_id: str) -> AsyncIterator[str]:
    nodes: dict[str, NodeRow] = {}
    status = ""
    quiet_since = time.monotonic()
    while True:
        summary, rows = await anyio.to_thread.run_sync(_snapshot, execution_id)
        sent = False
        for node in sorted(rows, key=lambda n: n.node_id):
            if nodes.get(node.node_id) != node:
                nodes[node.node_id] = node
                yield event("node", node)
                sent = True
        if summary.status != status:
            status = summary.status
            yield event("execution", summary)
            sent = True
        if status in EXECUTION_TERMINAL:
            return
        if sent:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > KEEPALIVE:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        await anyio.sleep(POLL)


async def _list_events(filters: dict[str, Any]) -> AsyncIterator[str]:
    seen: dict[str, tuple[str, float | None]] = {}
    quiet_since = time.monotonic()
    while True:
        rows = await anyio.to_thread.run_sync(
            lambda: runtime.get().store.browse.executions_page(**filters)
        )
        sent = False
        for summary in reversed(rows):  # oldest first, so a client can prepend each
            if seen.get(summary.id) != (summary.status, summary.finished_at):
                yield event("execution", summary)
                sent = True
        # Only the rows of this page are remembered, so a long-lived stream stays small.
        seen = {s.id: (s.status, s.finished_at) for s in rows}
        if sent:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > KEEPALIVE:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        await anyio.sleep(POLL)


def watch_execution(call: Call) -> AsyncIterator[str]:
    summary = scope.execution(call, call.path["execution_id"])
    return _execution_events(summary.id)


def watch_list(call: Call) -> AsyncIterator[str]:
    q: ExecutionQuery = call.query
    filters = {
        "status": q.status,
        "workflow_id": q.workflow_id,
        "tenant": scope.tenant(call, q.tenant),
        "parent_id": q.parent_id,
        "since": q.since,
        "until": q.until,
        "limit": q.limit,
    }
    return _list_events(filters)


TAG = "events"

OPERATIONS = [
    Operation(
        "GET",
        "/streams/executions",
        "streamExecutions",
        "Server-sent `execution` events: the newest executions as they change",
        watch_list,
        TAG,
        query=ExecutionQuery,
        stream=True,
    ),
    Operation(
        "GET",
        "/streams/executions/{execution_id}",
        "streamExecution",
        "Server-sent `node` and `execution` events until the execution ends",
        watch_execution,
        TAG,
        stream=True,
    ),
]
