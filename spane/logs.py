"""structlog setup: console lines in development, JSON lines in production."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_configured = False


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
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            *tail,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str = "spane") -> Any:
    """Return a structlog logger."""
    return structlog.get_logger(name)
