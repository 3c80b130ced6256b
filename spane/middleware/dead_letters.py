"""Record a dead letter for every message the broker is about to reject."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dramatiq import Broker, Middleware


class DeadLetters(Middleware):
    """Turns rejected messages (unknown actor, exhausted infrastructure retries) into
    dead-letter records in the database, so they can be listed and retried.

    Args:
        record: Stores one rejected message with the reason it was rejected.
    """

    def __init__(self, record: Callable[[Any, str], None]) -> None:
        self.record = record

    def before_nack(self, broker: Broker, message: Any) -> None:
        exception = getattr(message, "_exception", None)
        reason = repr(exception) if exception is not None else "message rejected"
        self.record(message, reason)
