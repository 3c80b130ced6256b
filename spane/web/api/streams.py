"""Server-sent events: an execution's node changes, and the executions list.

Both poll the database (cheap queries without payloads) and send only what changed, so any
number of web processes can serve streams with nothing shared between them but the store.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
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


async def _polled(changes: Callable[[], Awaitable[tuple[list[str], bool]]]) -> AsyncIterator[str]:
    """Every ``POLL`` seconds, send the events ``changes`` returns until it says it is done,
    and a keep-alive comment after ``KEEPALIVE`` quiet seconds."""
    quiet_since = time.monotonic()
    while True:
        events, done = await changes()
        for text in events:
            yield text
        if done:
            return
        if events:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > KEEPALIVE:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        await anyio.sleep(POLL)


def _execution_events(execution_id: str) -> AsyncIterator[str]:
    nodes: dict[str, NodeRow] = {}
    status = ""

    async def changes() -> tuple[list[str], bool]:
        nonlocal status
        summary, rows = await anyio.to_thread.run_sync(_snapshot, execution_id)
        events = []
        for node in sorted(rows, key=lambda n: n.node_id):
            if nodes.get(node.node_id) != node:
                nodes[node.node_id] = node
                events.append(event("node", node))
        if summary.status != status:
            status = summary.status
            events.append(event("execution", summary))
        return events, status in EXECUTION_TERMINAL

    return _polled(changes)


def _list_events(filters: dict[str, Any]) -> AsyncIterator[str]:
    seen: dict[str, tuple[str, float | None]] = {}

    async def changes() -> tuple[list[str], bool]:
        nonlocal seen
        rows = await anyio.to_thread.run_sync(
            lambda: runtime.get().store.browse.executions_page(**filters)
        )
        # Oldest first, so a client can prepend each.
        events = [
            event("execution", summary)
            for summary in reversed(rows)
            if seen.get(summary.id) != (summary.status, summary.finished_at)
        ]
        # Only the rows of this page are remembered, so a long-lived stream stays small.
        seen = {s.id: (s.status, s.finished_at) for s in rows}
        return events, False

    return _polled(changes)


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
