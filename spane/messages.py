"""The messages Spane sends itself: which actor, which queue, which arguments.

Below every part that sends or declares actors, so the names are spelt once.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import dramatiq

if TYPE_CHECKING:
    from .settings import Settings
    from .store import Dispatch

#: The actor that advances executions on timers and child wake-ups.
COORDINATOR = "spane.coordinator"
#: The actor that creates executions from start messages.
START_WORKFLOW = "spane.start_workflow"

#: Dramatiq runs the prefetched message of lowest priority value first, so within one
#: worker a high-lane node overtakes queued default- and low-lane ones.
LANE_PRIORITY = {"high": 0, "default": 50, "low": 100}


def queue_name(settings: Settings, lane: str) -> str:
    """Return the queue that carries a lane's messages, e.g. ``spane.high``."""
    return f"{settings.namespace}.{lane}"


def actor_name(node_type: str, lane: str) -> str:
    """Return the Dramatiq actor of a node type on a lane (one per lane, for priority)."""
    return f"spane.node.{node_type}.{lane}"


def node_message(settings: Settings, d: Dispatch) -> tuple[dramatiq.Message[Any], int | None]:
    """The message that runs one queued node attempt, and its delay in milliseconds."""
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=queue_name(settings, d.lane),
        actor_name=actor_name(d.type, d.lane),
        args=(),
        kwargs={"execution_id": d.execution_id, "node_id": d.node_id, "attempt": d.attempt},
        options={},
    )
    # Rounded up: a message due a fraction of a millisecond early would find its
    # retry's backoff not yet over and be sent once more.
    delay = math.ceil(d.delay * 1000)
    return message, delay if delay > 0 else None


def coordinator_message(settings: Settings, kwargs: dict[str, Any]) -> dramatiq.Message[Any]:
    """A message to the coordinator (``event`` is ``timer`` or ``child_ended``)."""
    return dramatiq.Message(
        queue_name=queue_name(settings, "high"),
        actor_name=COORDINATOR,
        args=(),
        kwargs=kwargs,
        options={},
    )
