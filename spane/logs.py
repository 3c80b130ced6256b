"""structlog setup: console lines in development, JSON lines in production."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from opentelemetry import trace

_configured = False


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of writing.

    Loggers are cached on first use; binding the stream object itself would keep writing
    to a stream someone replaced and closed since (a capturing test runner, a daemoniser).
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(log_format: str = "console", level: str = "info") -> None:
    """Configure structlog once per process (later calls are ignored)."""
    global _configured
    if _configured:
        return
    _configured = True
    tail: list[Any] = (
        [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
        if log_format == "json"
        else [structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_trace_ids,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            *tail,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(_CurrentStderr()),  # type: ignore[arg-type]
        # Not cached: a cached module-level logger keeps the processors of its first use,
        # so structlog.testing.capture_logs (and any later reconfiguration) would miss it.
        cache_logger_on_first_use=False,
    )


def configure_unless_configured(log_format: str = "console", level: str = "info") -> None:
    """``configure``, unless the application configured structlog itself (an embedded
    start must not override an application's logging, nor a test's ``capture_logs``)."""
    if not structlog.is_configured():
        configure(log_format, level)


def reset() -> None:
    """Forget the configuration, so that the next ``configure`` call applies.

    For a process that runs several entry points in turn (an application's own CLI
    around Spane's, a test session): the first one's level would otherwise stick.
    """
    global _configured
    _configured = False
    structlog.reset_defaults()


def add_trace_ids(logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
    """Add ``trace_id`` and ``span_id`` of the current span (inside node work: the attempt's
    span, or a span node code opened), so a log line leads to its trace."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", trace.format_trace_id(context.trace_id))
        event.setdefault("span_id", trace.format_span_id(context.span_id))
    return event
