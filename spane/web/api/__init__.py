"""The JSON API under ``/api/v1``: one module per resource, each listing its operations."""

from __future__ import annotations

from ..routing import Operation
from . import (
    batches,
    breakers,
    controls,
    deadletters,
    executions,
    lanes,
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
    lanes,
    streams,
)


def operations() -> list[Operation]:
    """Every operation of the API, in the order routes are matched."""
    return [op for resource in RESOURCES for op in resource.OPERATIONS]
