"""Bind log context for the duration of each message, and clear it afterwards."""

from __future__ import annotations

from typing import Any

import structlog
from dramatiq import Broker, Middleware


class LogContext(Middleware):
    """Every log line emitted while a message is processed carries its identifiers."""

    def before_process_message(self, broker: Broker, message: Any) -> None:
        structlog.contextvars.clear_contextvars()
        kwargs = message.kwargs or {}
        structlog.contextvars.bind_contextvars(
            message_id=message.message_id,
            **{k: kwargs[k] for k in ("execution_id", "node_id", "attempt") if k in kwargs},
        )

    def after_process_message(
        self,
        broker: Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        structlog.contextvars.clear_contextvars()

    after_skip_message = after_process_message
