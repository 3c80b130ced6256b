"""Controls of one execution: cancel, pause, resume, replay, rerun."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from ... import api, control, runtime
from ...store import ExecutionSummary
from ..routing import Call, Operation
from . import scope
from .executions import Started


class ReplayQuery(msgspec.Struct):
    """Where to replay from: a node, or (unset) every failed or cancelled node."""

    from_node: str | None = None


def _control(action: Callable[[str], None]) -> Callable[[Call], ExecutionSummary]:
    def handle(call: Call) -> ExecutionSummary:
        summary = scope.execution(call, call.path["execution_id"])
        action(summary.id)
        return runtime.get().store.summary(summary.id)

    return handle


def replay(call: Call) -> ExecutionSummary:
    summary = scope.execution(call, call.path["execution_id"])
    control.replay(summary.id, from_node=call.query.from_node)
    return runtime.get().store.summary(summary.id)


def rerun(call: Call) -> Started:
    summary = scope.execution(call, call.path["execution_id"])
    return Started(control.rerun(summary.id))


_ID = "/executions/{execution_id}"
TAG = "controls"

OPERATIONS = [
    Operation(
        "POST",
        _ID + "/cancel",
        "cancelExecution",
        "Cancel an execution and children",
        _control(api.cancel),
        TAG,
        response=ExecutionSummary,
    ),
    Operation(
        "POST",
        _ID + "/pause",
        "pauseExecution",
        "Pause: no new node starts",
        _control(control.pause),
        TAG,
        response=ExecutionSummary,
    ),
    Operation(
        "POST",
        _ID + "/resume",
        "resumeExecution",
        "Resume where it stopped",
        _control(control.resume),
        TAG,
        response=ExecutionSummary,
    ),
    Operation(
        "POST",
        _ID + "/replay",
        "replayExecution",
        "Re-run failed nodes (or from_node) and all after them",
        replay,
        TAG,
        query=ReplayQuery,
        response=ExecutionSummary,
    ),
    Operation(
        "POST",
        _ID + "/rerun",
        "rerunExecution",
        "A new execution with the same input",
        rerun,
        TAG,
        response=Started,
        status=201,
    ),
]
