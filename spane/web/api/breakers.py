"""Circuit breakers: every breaker the workers declared; resetting one takes an admin
token, since a breaker guards a service all tenants share."""

from __future__ import annotations

import msgspec

from ... import control
from ...middleware.circuit_breaker import BreakerStatus
from ..routing import Call, Operation


class BreakerList(msgspec.Struct):
    """Breakers, by name."""

    items: list[BreakerStatus]


def list_(call: Call) -> BreakerList:
    return BreakerList(list(control.breakers()))


def reset(call: Call) -> BreakerStatus:
    name = call.path["name"]
    control.reset_breaker(name)
    return next(b for b in control.breakers() if b.name == name)


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
        response=BreakerStatus,
        admin=True,
    ),
]
