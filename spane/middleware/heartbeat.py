"""Live workers: each worker registers in the database and heartbeats while it runs.

``spane workers`` lists the rows heard from within ``SPANE_WORKER_LEASE_SECONDS``; a
worker that stops cleanly removes its row, one that dies drops off after its lease.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import structlog
from dramatiq import Broker, Middleware

from .. import registry
from ..inflight import inflight
from ..registry import LANES
from ..store.operations import WorkerInfo

if TYPE_CHECKING:
    from ..settings import Settings
    from ..store import Store

log = structlog.get_logger("spane.worker")


class Heartbeat(Middleware):
    """Registers this worker process, renews its row, and removes it on shutdown.

    Args:
        settings: What the worker serves (broker, database, namespace) and its lease.
        store: Where the worker registry lives.
        worker_id: This process's id in the registry.
        version: The Spane version the row reports.
    """

    def __init__(self, settings: Settings, store: Store, worker_id: str, version: str) -> None:
        self.settings = settings
        self.lease = settings.worker_lease_seconds
        self.store = store
        self.worker_id = worker_id
        self.version = version
        self._info: WorkerInfo | None = None
        self._stop = threading.Event()
        self._draining = False
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: Broker, worker: Any) -> None:
        now = time.time()
        consumed = set(worker.consumers)  # queue names, as --queues narrowed them
        self._info = WorkerInfo(
            id=self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            version=self.version,
            lanes=tuple(lane for lane in LANES if f"{self.settings.namespace}.{lane}" in consumed),
            node_types=tuple(sorted(t.name for t in registry.all_types())),
            threads=worker.worker_threads,
            inflight=0,
            draining=False,
            started_at=now,
            heartbeat_at=now,
        )
        self.store.register_worker(self._info)
        log.info(
            "worker serving",
            broker=mask(self.settings.broker_url) or "embedded",
            database=mask(self.settings.database_url),
            lanes=list(self._info.lanes),
            node_types=list(self._info.node_types),
            threads=self._info.threads,
        )
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="spane-heartbeat", daemon=True)
        self._thread.start()

    def before_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        self._draining = True
        self._beat()

    def after_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._info is not None:
            try:
                self.store.unregister_worker(self.worker_id)
            except Exception as exc:  # the row then expires with its lease
                log.warning("could not unregister worker", error=str(exc))

    def _loop(self) -> None:
        while not self._stop.wait(self.lease / 3):
            self._beat()

    def _beat(self) -> None:
        if self._info is None:
            return
        try:
            known = self.store.heartbeat_worker(
                self.worker_id,
                inflight=len(inflight.running()),
                draining=self._draining,
                lease=self.lease,
            )
            if not known:  # dropped while unheard of (a long pause): register again
                self.store.register_worker(self._info)
        except Exception as exc:
            # The database may be restarting; the next beat tries again.
            log.warning("worker heartbeat failed", error=str(exc))


def mask(url: str) -> str:
    """Return ``url`` with its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
