"""Executions: start, list (cursor pages), get, history, children, stored values."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from ... import api, control, runtime
from ...definitions import Callback
from ...statuses import ExecutionStatus
from ...store import Execution, ExecutionSummary
from ..errors import HttpError
from ..routing import Call, Operation
from . import scope

Limit = Annotated[int, msgspec.Meta(ge=1, le=500)]
#: An ISO 8601 time with its offset (the schema says so; msgspec's alone says ``string``).
Instant = Annotated[datetime, msgspec.Meta(extra_json_schema={"format": "date-time"})]


class ExecutionPage(msgspec.Struct):
    """A page of executions, newest first; pass ``next_cursor`` as ``cursor`` for more."""

    items: list[ExecutionSummary]
    next_cursor: str | None


class ExecutionQuery(msgspec.Struct, forbid_unknown_fields=False):
    """Filters of the execution list (all optional; ``since``/``until`` are Unix times)."""

    status: ExecutionStatus | None = None
    workflow_id: str | None = None
    tenant: str | None = None
    parent_id: str | None = None
    since: float | None = None
    until: float | None = None
    cursor: str | None = None
    limit: Limit = 50


class StartRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Start an execution (as ``spane.enqueue_workflow``); with ``delay`` (``"10m"`` or
    seconds) or ``at`` (an ISO 8601 time with its offset, or Unix seconds) it starts later,
    and the id returned is the one it will have."""

    workflow_id: str
    input: Any = None
    tenant: str | None = None
    priority: Literal["high", "default", "low"] | None = None
    idempotency_key: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    version: Annotated[int, msgspec.Meta(ge=1)] | None = None
    on_finish: Callback | None = None
    delay: str | float | None = None
    at: Instant | float | None = None


class Started(msgspec.Struct):
    """The id of a started (or, by idempotency key, earlier) execution."""

    execution_id: str


class EventOut(msgspec.Struct):
    """One recorded state change."""

    id: int
    node_id: str | None
    kind: str
    attempt: int | None
    detail: str | None
    at: float


class History(msgspec.Struct):
    """Every recorded state change of an execution, in order."""

    items: list[EventOut]


class ValueQuery(msgspec.Struct):
    """How much of a stored value to return."""

    max_bytes: Annotated[int, msgspec.Meta(ge=1, le=16 * 1024 * 1024)] = 65536


class ValueOut(msgspec.Struct):
    """A stored value as JSON text, cut at ``max_bytes`` (``truncated`` then says so)."""

    bytes: int
    offloaded: bool
    truncated: bool
    text: str


def encode_cursor(summary: ExecutionSummary) -> str:
    """Return the cursor of the page after ``summary``."""
    raw = msgspec.json.encode([summary.created_at, summary.id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """Return the ``(created_at, id)`` position a cursor names."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, last = msgspec.json.decode(raw, type=tuple[float, str])
    except (binascii.Error, ValueError, msgspec.DecodeError, msgspec.ValidationError):
        raise HttpError(422, "cursor is not valid: pass next_cursor from a previous page") from None
    return at, last


def list_executions(call: Call) -> ExecutionPage:
    q: ExecutionQuery = call.query
    rows = runtime.get().store.browse.executions_page(
        status=q.status,
        workflow_id=q.workflow_id,
        tenant=scope.tenant(call, q.tenant),
        parent_id=q.parent_id,
        since=q.since,
        until=q.until,
        before=decode_cursor(q.cursor) if q.cursor else None,
        limit=q.limit + 1,
    )
    more = len(rows) > q.limit
    rows = rows[: q.limit]
    return ExecutionPage(items=rows, next_cursor=encode_cursor(rows[-1]) if more else None)


def start(call: Call) -> Started:
    body: StartRequest = call.body
    tenant = scope.tenant(call, body.tenant) or "default"
    execution_id = api.enqueue_workflow(
        body.workflow_id,
        body.input,
        tenant=tenant,
        priority=body.priority,
        idempotency_key=body.idempotency_key,
        version=body.version,
        delay=body.delay,
        at=body.at,
        on_finish=body.on_finish,
    )
    return Started(execution_id)


def get(call: Call) -> Execution:
    scope.execution(call, call.path["execution_id"])
    return api.get_execution(call.path["execution_id"])


def history(call: Call) -> History:
    scope.execution(call, call.path["execution_id"])
    events = control.history(call.path["execution_id"])
    return History([msgspec.convert(e, EventOut, from_attributes=True) for e in events])


def children(call: Call) -> ExecutionPage:
    parent = scope.execution(call, call.path["execution_id"])
    rows = runtime.get().store.browse.executions_page(parent_id=parent.id, limit=500)
    return ExecutionPage(items=rows, next_cursor=None)


def value(call: Call) -> ValueOut:
    summary = scope.execution(call, call.path["execution_id"])
    node_id = call.path.get("node_id")
    name = call.path.get("name", "output")
    if name not in ("input", "output"):
        raise HttpError(404, f"an execution has values 'input' and 'output', not {name!r}")
    rt = runtime.get()
    text = rt.store.browse.stored_value(summary.id, node_id, name)
    offloaded = bool(rt.payloads.refs(text))
    data = rt.payloads.encoded(summary.tenant, text, what=name)
    cap: int = call.query.max_bytes
    cut = data[:cap].decode(errors="ignore")
    return ValueOut(bytes=len(data), offloaded=offloaded, truncated=len(data) > cap, text=cut)


_ID = "/executions/{execution_id}"
TAG = "executions"

OPERATIONS = [
    Operation(
        "GET",
        "/executions",
        "listExecutions",
        "List executions, newest first",
        list_executions,
        TAG,
        query=ExecutionQuery,
        response=ExecutionPage,
    ),
    Operation(
        "POST",
        "/executions",
        "startExecution",
        "Start an execution",
        start,
        TAG,
        body=StartRequest,
        response=Started,
        status=201,
    ),
    Operation(
        "GET",
        _ID,
        "getExecution",
        "An execution with its nodes and values",
        get,
        TAG,
        response=Execution,
    ),
    Operation(
        "GET",
        _ID + "/history",
        "getHistory",
        "Every recorded state change",
        history,
        TAG,
        response=History,
    ),
    Operation(
        "GET",
        _ID + "/children",
        "listChildren",
        "Sub-workflow executions",
        children,
        TAG,
        response=ExecutionPage,
    ),
    Operation(
        "GET",
        _ID + "/values/{name}",
        "getValue",
        "The execution's input or output",
        value,
        TAG,
        query=ValueQuery,
        response=ValueOut,
    ),
    Operation(
        "GET",
        _ID + "/nodes/{node_id}/output",
        "getNodeOutput",
        "A node's output",
        value,
        TAG,
        query=ValueQuery,
        response=ValueOut,
    ),
]
