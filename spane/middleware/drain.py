"""Graceful drain: on shutdown take no new work, finish or hand back what is running."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import structlog
from dramatiq import Broker, Middleware
from dramatiq.middleware import SkipMessage

log = structlog.get_logger("spane.drain")


class Drain(Middleware):
    """Gives in-flight nodes a grace period, then hands the rest back to the queue.

    Dramatiq stops taking messages and requeues prefetched ones when the worker shuts
    down; this middleware bounds how long in-flight node code may keep the worker,
    and hands what is still running back (as a new attempt) so another worker runs it.

    Args:
        hand_back: Gives every attempt still running back to the queue; returns how many.
        grace: Seconds in-flight nodes may take to finish once draining starts.
    """

    def __init__(self, hand_back: Callable[[], int], *, grace: float = 30.0) -> None:
        self.grace = grace
        self.draining = threading.Event()
        self.hand_back = hand_back
        self._timer: threading.Timer | None = None

    def before_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        self.draining.set()
        log.info("draining: no new work taken", grace_seconds=self.grace)
        self._timer = threading.Timer(self.grace, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def after_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def before_process_message(self, broker: Broker, message: Any) -> None:
        if self.draining.is_set():
            # A message that reached a thread after draining began goes back to the
            # broker as a fresh copy (duplicates are harmless: transitions are guarded).
            broker.enqueue(message.copy())
            raise SkipMessage("worker is draining")

    def _expire(self) -> None:
        count = self.hand_back()
        log.info("grace period over: in-flight nodes handed back", count=count)
