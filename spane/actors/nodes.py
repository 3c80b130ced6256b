"""The node actors: one per node type and lane, each bound to its lane's queue."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dramatiq

from .. import executor
from ..messages import LANE_PRIORITY, actor_name, queue_name

if TYPE_CHECKING:
    from ..registry import NodeType
    from ..services import Services


def declare(services: Services, node_type: NodeType) -> None:
    """Declare the node type's actors on ``services.broker``; each runs one attempt
    (and the successors the executor keeps inline)."""

    def run(execution_id: str, node_id: str, attempt: int) -> None:
        executor.run_node(services, execution_id, node_id, attempt)

    run.__name__ = run.__qualname__ = f"node_{node_type.name}"
    for lane, priority in LANE_PRIORITY.items():
        name = actor_name(node_type.name, lane)
        if name in services.broker.actors:
            continue  # re-registration replaces the code; the actor looks it up per call
        dramatiq.Actor(
            run,
            broker=services.broker,
            actor_name=name,
            queue_name=queue_name(services.settings, lane),
            priority=priority,
            options={},
        )
