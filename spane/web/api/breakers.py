"""Circuit breakers: every breaker the workers declared; resetting one takes an admin
token, since a breaker guards a service all tenants share."""

from __future__ import annotations

import msgspec

from ... import control
from ...middleware.circuit_breaker import BreakerStatus
from ..routing import Call, Operation


class BreakerOut(msgspec.Struct):
    """A breaker: ``closed``, ``open`` or ``half-open``; while open, ``closes_at`` is when
    a trial call may close it (Unix seconds)."""

    name: str
    state: str
    failures: int
    fail_max: int
    reset_timeout: float
    opened_at: float | None
    closes_at: float | None


class BreakerList(msgspec.Struct):
    """Breakers, by name."""

    items: list[BreakerOut]


def _out(status: BreakerStatus) -> BreakerOut:
    return msgspec.convert(status, BreakerOut, from_attributes=True)


def list_(call: Call) -> BreakerList:
    return BreakerList([_out(b) for b in control.breakers()])


def reset(call: Call) -> BreakerOut:
    name = call.path["name"]
    control.reset_breaker(name)
    return next(_out(b) for b in control.breakers() if b.name == name)


OPERATIONS = [
    Operation(
        "GET",
        "/breakers",
        "listBreakers",
        "Circuit breakers with their state",
        list_,
        "breakers",
        response=BreakerList,
    ),
    Operation(
        "POST",
        "/breakers/{name:path}/reset",
        "resetBreaker",
        "Close a breaker now, for every worker",
        reset,
        "breakers",
        response=BreakerOut,
        admin=True,
    ),
]
