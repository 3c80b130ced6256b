"""What the engine's parts share in one process: settings, store, broker and sending.

The layers below the public API (executor, coordinator, recovery, starts, schedules,
signals, callbacks) take a ``Services``; ``runtime.Runtime`` builds one from settings.
Sending here always sends: keeping a successor to run inline is the executor's choice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from dramatiq import Broker, Worker
from sqlalchemy.engine import Engine

from . import logs
from .admission import Admission
from .blobs import CachingBlobStore
from .messages import coordinator_message, node_message
from .middleware import CircuitBreaker, Drain, Health, Metrics, SharedState, Tracing
from .payloads import Payloads
from .settings import Settings
from .store import Dispatch, Store


class Services:
    """The parts of one process, each built with its dependencies before this.

    Args:
        settings: Where the broker, database and blobs are.
        engine: The database engine the store runs on.
        store: All persistence.
        payloads: Packs and reads stored values (claim check of large ones).
        blobs: Where large values live.
        tracing: The tracing middleware (the store opens root spans through it).
        shared: Where breakers and rate limits keep their shared state.
        broker: The broker, its middleware built from the parts above.
        identity: This process's name in leases and the worker registry.
        drain: The broker's drain middleware (tells whether this worker drains).
        health: The broker's stuck-thread check.
        breakers: The broker's circuit breakers.
        metrics: The broker's metrics middleware, if metrics are on.
        admission: Holds ready nodes over a concurrency limit or past their tenant's turn
            in the database instead of sending them.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        engine: Engine,
        store: Store,
        payloads: Payloads,
        blobs: CachingBlobStore,
        tracing: Tracing,
        shared: SharedState,
        broker: Broker,
        identity: str,
        drain: Drain,
        health: Health,
        breakers: CircuitBreaker,
        metrics: Metrics | None,
        admission: Admission,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.store = store
        self.payloads = payloads
        self.blobs = blobs
        self.tracing = tracing
        self.shared = shared
        self.broker = broker
        self.identity = identity
        self.drain = drain
        self.health = health
        self.breakers = breakers
        self.metrics = metrics
        self.admission = admission
        self.last_heartbeat = 0.0
        self._worker: Worker | None = None
        self._lock = threading.Lock()

    @property
    def healthy(self) -> bool:
        """Whether this worker takes work: not draining, not too many threads stuck.

        What a readiness probe reports.
        """
        return not self.drain.draining.is_set() and self.health.healthy

    def dispatch(self, dispatches: Iterable[Dispatch]) -> None:
        """Send node messages (after the transaction that queued them committed), those
        that admission lets through; the others wait in the database."""
        self.send(self.admission.admit(dispatches))

    def send(self, dispatches: Iterable[Dispatch]) -> None:
        """Send node messages that admission already let through."""
        for d in dispatches:
            message, delay = node_message(self.settings, d)
            self.broker.enqueue(message, delay=delay)

    def send_timer(self, execution_id: str, node_id: str, attempt: int, until: float) -> None:
        """Send the coordinator a wake-up for a timer (the database sweep is the backstop)."""
        delay = int(max(0.0, until - time.time()) * 1000)
        if delay >= 7 * 24 * 3600 * 1000:
            return  # beyond the broker's delay limit; the sweeper fires it
        kwargs = {"execution_id": execution_id, "event": "timer", "node_id": node_id}
        message = coordinator_message(self.settings, {**kwargs, "attempt": attempt})
        self.broker.enqueue(message, delay=delay if delay > 0 else None)

    def wake(self, parent_id: str, node_id: str, child_id: str) -> None:
        """Ask the coordinator to wake a parent whose child ended (the sweep backs it up)."""
        kwargs = {"execution_id": parent_id, "event": "child_ended", "node_id": node_id}
        self.broker.enqueue(coordinator_message(self.settings, {**kwargs, "child_id": child_id}))

    def ensure_worker(self) -> None:
        """Start the in-process worker when running embedded (no broker configured).

        The embedded start is an entry point: logging is configured then, unless the
        application configured it.
        """
        if not self.settings.embedded:
            return
        with self._lock:
            if self._worker is None:
                logs.configure_unless_configured(self.settings.log_format, self.settings.log_level)
                self._worker = Worker(
                    self.broker, worker_threads=self.settings.embedded_threads, worker_timeout=50
                )
                self._worker.start()
                # Messages of the in-process broker died with any earlier process on this
                # database: send queued nodes again now instead of after their lease.
                self.dispatch(self.store.queued_everywhere())

    def close(self) -> None:
        """Stop the embedded worker and release connections."""
        with self._lock:
            if self._worker is not None:
                self._worker.stop(timeout=10_000)
                self._worker = None
        self.broker.close()
        self.tracing.flush()
        self.engine.dispose()
