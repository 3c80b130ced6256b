"""Signals: complete an execution's ``wait_for`` node (``spane.signal``)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from ... import starting
from ..routing import Call, Operation
from . import scope


class SignalRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The signal's payload (the waiting node's output) and, to send it at most once, an id."""

    payload: Any = None
    signal_id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None


class Signalled(msgspec.Struct):
    """A signal sent; ``stored`` is false when one with this ``signal_id`` was sent before."""

    execution_id: str
    name: str
    stored: bool


def send(call: Call) -> Signalled:
    summary = scope.execution(call, call.path["execution_id"])
    body: SignalRequest = call.body
    name = call.path["name"]
    stored = starting.signal(summary.id, name, body.payload, signal_id=body.signal_id)
    return Signalled(summary.id, name, stored)


OPERATIONS = [
    Operation(
        "POST",
        "/executions/{execution_id}/signals/{name}",
        "sendSignal",
        "Send a signal to a waiting (or later waiting) node",
        send,
        "controls",
        body=SignalRequest,
        response=Signalled,
        status=202,
    ),
]
