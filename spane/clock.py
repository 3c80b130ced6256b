"""The clock: work that starts at a time. Every worker's sweep runs ``tick`` (one
worker at a time, under the sweeper lease); ``spane clock`` runs it in a process of its
own for deployments that want one. Running both is harmless: each start is guarded."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import structlog

from . import schedules, signals, starts

if TYPE_CHECKING:
    from .services import Services

log = structlog.get_logger("spane.clock")


def tick(rt: Services) -> int:
    """Fire due schedule ticks, start due delayed starts, deliver and time out signals;
    return how many things happened."""
    return schedules.fire_due(rt) + starts.start_due(rt) + signals.sweep(rt)


def run(rt: Services, stop: threading.Event) -> None:
    """Run ``tick`` every sweep interval until ``stop`` is set."""
    while not stop.wait(rt.settings.sweep_interval):
        try:
            while tick(rt) and not stop.is_set():
                pass
        except Exception as exc:
            # The database may be restarting; the next pass tries again.
            log.warning("clock tick failed; retrying next interval", error=str(exc))
