"""The JSON API under ``/api/v1``: one module per resource, each listing its operations.

A new resource (schedules, breakers, workers, lanes, signals) is one more module here.
"""

from __future__ import annotations

from ..routing import Operation
from . import controls, deadletters, executions, me, streams, workflows

RESOURCES = (me, workflows, executions, controls, deadletters, streams)


def operations() -> list[Operation]:
    """Every operation of the API, in the order routes are matched."""
    return [op for resource in RESOURCES for op in resource.OPERATIONS]
