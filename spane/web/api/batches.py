"""Batch start: many executions of one workflow in one transaction (``spane.enqueue_many``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from ... import starting
from ..routing import Call, Operation
from . import scope

#: The most inputs one request may start (larger batches: several requests).
MAX_BATCH = 1000


class BatchRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Start one execution per input; if any input is refused, none starts."""

    workflow_id: str
    inputs: Annotated[list[Any], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]
    tenant: str | None = None
    priority: Literal["high", "default", "low"] | None = None
    version: Annotated[int, msgspec.Meta(ge=1)] | None = None


class StartedBatch(msgspec.Struct):
    """The ids of the started executions, in the order of the inputs."""

    execution_ids: list[str]


def start_batch(call: Call) -> StartedBatch:
    body: BatchRequest = call.body
    ids = starting.enqueue_many(
        body.workflow_id,
        body.inputs,
        tenant=scope.tenant(call, body.tenant) or "default",
        priority=body.priority,
        version=body.version,
    )
    return StartedBatch(ids)


OPERATIONS = [
    Operation(
        "POST",
        "/executions/batch",
        "startExecutions",
        "Start one execution per input, all or none",
        start_batch,
        "executions",
        body=BatchRequest,
        response=StartedBatch,
        status=201,
    ),
]
