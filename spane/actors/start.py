"""The start actor: creates executions asked for by start messages (``producer``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq.middleware import CurrentMessage

from .. import starts
from ..messages import LANE_PRIORITY, START_WORKFLOW, queue_name

if TYPE_CHECKING:
    from ..services import Services


def declare(services: Services) -> None:
    """Declare the start actor on the default lane of ``services.broker``."""

    def start(
        workflow_id: str,
        input: Any = None,
        tenant: str = "default",
        idempotency_key: str | None = None,
        priority: str | None = None,
        version: int | None = None,
    ) -> None:
        starts.start_from_message(
            services,
            CurrentMessage.get_current_message(),
            workflow_id,
            input,
            tenant=tenant,
            idempotency_key=idempotency_key,
            priority=priority,
            version=version,
        )

    dramatiq.Actor(
        start,
        broker=services.broker,
        actor_name=START_WORKFLOW,
        queue_name=queue_name(services.settings, "default"),
        priority=LANE_PRIORITY["default"],
        options={},
    )
