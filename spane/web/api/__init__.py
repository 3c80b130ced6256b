"""The JSON API under ``/api/v1``: one module per resource, each listing its operations.

A new resource (lanes) is one more module here.
"""

from __future__ import annotations

from ..routing import Operation
from . import (
    batches,
    breakers,
    controls,
    deadletters,
    executions,
    me,
    schedules,
    signals,
    streams,
    workers,
    workflows,
)

RESOURCES = (
    me,
    workflows,
    executions,
    batches,
    controls,
    signals,
    deadletters,
    schedules,
    breakers,
    workers,
    streams,
)


def operations() -> list[Operation]:
    """Every operation of the API, in the order routes are matched."""
    return [op for resource in RESOURCES for op in resource.OPERATIONS]
