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
        sweep: One pass of recovery; returns how much it did (the loop repeats while
            there is more).
        release: Gives the sweeper lease up when the worker stops, so another worker's
            sweeper takes over at its next pass instead of after the lease runs out.
        interval: Seconds between two sweeps.
    """

    def __init__(
        self,
        sweep: Callable[[], int],
        release: Callable[[], None],
        *,
        interval: float = 1.0,
    ) -> None:
        if not callable(sweep) or not callable(release):
            raise TypeError("Sweeper needs a sweep function and a release function")
        self.interval = interval
        self.sweep = sweep
        self.release = release
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: Broker, worker: Any) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="spane-sweeper", daemon=True)
        self._thread.start()

    def after_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        self._stop.set()
        if self._thread is None:
            return
        self._thread.join(timeout=5)
        self._thread = None
        try:
            self.release()
        except Exception as exc:
            # Not given up, the lease still runs out on its own.
            log.warning("sweeper lease not released", error=str(exc))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                while self.sweep() and not self._stop.is_set():
                    pass
            except Exception as exc:
                # The database may be restarting; the next pass tries again.
                log.warning("sweep failed; retrying next interval", error=str(exc))
