"""The coordinator actor: advances executions on timers and child wake-ups.

It runs the same code as the worker thread that records a node's end inline
(``spane.coordinator``); messages come here for what has to wait (a timer) or happens
in another execution (a child's end).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dramatiq

from .. import coordinator
from ..messages import COORDINATOR, LANE_PRIORITY, queue_name

if TYPE_CHECKING:
    from ..services import Services


def declare(services: Services) -> None:
    """Declare the coordinator actor on the high lane of ``services.broker``."""

    def coordinate(
        execution_id: str,
        event: str,
        node_id: str = "",
        attempt: int = 0,
        child_id: str = "",
    ) -> None:
        coordinator.on_event(services, execution_id, event, node_id, attempt, child_id)

    dramatiq.Actor(
        coordinate,
        broker=services.broker,
        actor_name=COORDINATOR,
        queue_name=queue_name(services.settings, "high"),
        priority=LANE_PRIORITY["high"],
        options={},
    )
