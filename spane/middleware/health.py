"""Stop taking work while too many threads are stuck in node code past their timeout."""

from __future__ import annotations

from typing import Any

import structlog
from dramatiq import Broker, Middleware

from ..inflight import inflight

log = structlog.get_logger("spane.health")


class Health(Middleware):
    """Pauses the worker's consumers while ``max_stuck`` or more threads are stuck.

    A thread whose attempt timed out while blocked in C (``time.sleep``, a socket read)
    cannot be stopped: its attempt is recorded as timed out and superseded, but the
    thread is lost to the worker until the call returns. Past ``max_stuck`` such
    threads the worker takes no new messages (it finishes what it holds), says so in its
    log, and reports itself unhealthy for a readiness probe; it resumes once enough of
    them came back. A worker that stays unhealthy should be restarted.

    Args:
        max_stuck: Stuck threads tolerated before the worker stops taking work.
    """

    def __init__(self, max_stuck: int = 4) -> None:
        self.max_stuck = max_stuck
        self.stuck = 0
        self._worker: Any = None

    @property
    def healthy(self) -> bool:
        """False while the worker takes no work because too many threads are stuck."""
        return self.stuck < self.max_stuck

    def after_worker_boot(self, broker: Broker, worker: Any) -> None:
        self._worker = worker

    def after_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        self._worker = None

    def check(self) -> bool:
        """Count stuck threads; pause or resume taking work when health changes."""
        was = self.healthy
        self.stuck = inflight.stuck()
        if was and not self.healthy:
            log.error(
                "worker stopped taking work: threads are stuck in node code past their "
                "timeout; restart the worker if they do not come back",
                stuck_threads=self.stuck,
                max_stuck_threads=self.max_stuck,
                setting="SPANE_MAX_STUCK_THREADS",
            )
            self._set_paused(True)
        elif not was and self.healthy:
            log.info("stuck threads came back; worker takes work again", stuck_threads=self.stuck)
            self._set_paused(False)
        return self.healthy

    def _set_paused(self, paused: bool) -> None:
        if self._worker is None:
            return
        for consumer in list(self._worker.consumers.values()):
            if paused:
                consumer.pause()
            else:
                consumer.resume()
