"""Recovery from inside each worker: timers, lost messages, dead workers, heartbeats.

Timers and leases live in the database, so they survive the loss of every worker and
of the broker's data. Every worker runs this loop; a cluster-wide lock lets one of
them sweep at a time, and each recovery is a guarded transition besides.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import structlog
from dramatiq import Broker, Middleware

log = structlog.get_logger("spane.sweeper")


class Sweeper(Middleware):
    """Runs the recovery loop in a thread while the worker is up.

    Args:
        interval: Seconds between two sweeps.
    """

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.sweep: Callable[[], int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: Broker, worker: Any) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="spane-sweeper", daemon=True)
        self._thread.start()

    def after_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            if self.sweep is None:
                continue
            try:
                while self.sweep() and not self._stop.is_set():
                    pass
            except Exception as exc:
                # The database may be restarting; the next pass tries again.
                log.warning("sweep failed; retrying next interval", error=str(exc))
