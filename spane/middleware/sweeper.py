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
        watch: Called every ``watch_interval`` seconds between sweeps, in a thread of its
            own (``Admission.watch``: nodes waiting their turn are released soon after
            the lane's queue runs low, even by a worker that has not seen them held).
        watch_interval: Seconds between two calls of ``watch``.
    """

    def __init__(
        self,
        sweep: Callable[[], int],
        release: Callable[[], None],
        *,
        interval: float = 1.0,
        watch: Callable[[], None] | None = None,
        watch_interval: float = 0.1,
    ) -> None:
        if not callable(sweep) or not callable(release):
            raise TypeError("Sweeper needs a sweep function and a release function")
        self.interval = interval
        self.sweep = sweep
        self.release = release
        self.watch = watch
        self.watch_interval = watch_interval
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def after_worker_boot(self, broker: Broker, worker: Any) -> None:
        self._stop.clear()
        loops = [("spane-sweeper", self._loop)]
        if self.watch is not None:
            loops.append(("spane-turns", self._watch))
        self._threads = [threading.Thread(target=f, name=n, daemon=True) for n, f in loops]
        for thread in self._threads:
            thread.start()

    def after_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        self._stop.set()
        if not self._threads:
            return
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
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

    def _watch(self) -> None:
        assert self.watch is not None
        while not self._stop.wait(self.watch_interval):
            try:
                self.watch()
            except Exception as exc:
                log.warning("releasing waiting nodes failed; retrying", error=str(exc))
                self._stop.wait(self.interval)
