"""Prometheus metrics of node attempts, executions, messages, sweeps and blobs.

Inert until Dramatiq boots a worker process (``after_process_boot``, which only the
``dramatiq`` command emits): a process that merely enqueues, or runs embedded, records
nothing and writes no files. In a worker process the values go to the run's metric
folder, and the process this middleware asks Dramatiq to fork beside the workers
(``forks``) serves them with ``/livez`` and ``/readyz``.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dramatiq import Broker

from ..blobs import BlobStats
from ..inflight import inflight
from .attempts import Attempt, AttemptMiddleware, AttemptResult
from .metric_files import TenantLabels, open_folder

if TYPE_CHECKING:
    from .instruments import Instruments

#: Seconds between two heartbeats of a worker process (``/livez`` reads them).
TICK = 1.0


class Metrics(AttemptMiddleware):
    """Records Spane's and Dramatiq's metrics in each worker process.

    Args:
        folder: The run's metric folder (``metric_files.run_folder``).
        tenants: Tenants that get their own label (see ``TenantLabels``).
        blob_stats: Running blob totals of this process.
        serve: What Dramatiq forks beside the workers to serve the endpoint.
    """

    def __init__(
        self,
        folder: Path,
        tenants: tuple[str, ...],
        *,
        blob_stats: Callable[[], BlobStats],
        serve: Callable[[], int],
    ) -> None:
        self.folder = folder
        self.tenant = TenantLabels(tenants)
        self.blob_stats = blob_stats
        self.serve = serve
        self.instruments: Instruments | None = None
        self._blobs = BlobStats()
        self._tenants_seen: set[str] = set()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._message_starts: dict[str, float] = {}
        #: Delayed messages held in this process's memory, with their labels.
        self._delayed: dict[str, tuple[str, str]] = {}
        self._stop = threading.Event()
        self._draining = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def forks(self) -> list[Callable[[], int]]:
        return [self.serve]

    # -- process lifecycle -------------------------------------------------------------

    def after_process_boot(self, broker: Broker) -> None:
        open_folder(self.folder)
        from .instruments import Instruments

        self.instruments = Instruments()

    def after_worker_boot(self, broker: Broker, worker: Any) -> None:
        if self.instruments is None:
            return
        self.instruments.draining.set(0)
        self.instruments.heartbeat.set(time.time())
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._tick, args=(worker,), name="spane-metrics", daemon=True
        )
        self._thread.start()

    def before_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        self._draining.set()
        if self.instruments is not None:
            self.instruments.draining.set(1)

    def after_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        if self.instruments is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._sync_blobs(self.instruments)
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid(), str(self.folder))  # type: ignore[no-untyped-call]

    def _tick(self, worker: Any) -> None:
        """Every second: heartbeat while consumer and worker threads are alive, count the
        attempts running, copy blob totals (sampling keeps this off the hot path)."""
        while not self._stop.wait(TICK):
            m = self.instruments
            if m is None:
                return
            threads = [*worker.consumers.values(), *worker.workers]
            if self._draining.is_set() or all(t.is_alive() for t in threads):
                m.heartbeat.set(time.time())
            self._count_inflight(m)
            self._sync_blobs(m)

    def _count_inflight(self, m: Instruments) -> None:
        running = Counter(self.tenant(entry.claim.tenant) for entry in inflight.running())
        for tenant in self._tenants_seen | running.keys():
            self._of(m.inflight, tenant).set(running.get(tenant, 0))
        self._tenants_seen |= running.keys()

    def _sync_blobs(self, m: Instruments) -> None:
        now, before = self.blob_stats(), self._blobs
        m.blob_put_bytes.inc(now.put_bytes - before.put_bytes)
        m.blob_read_bytes.inc(now.read_bytes - before.read_bytes)
        m.blob_cache_hits.inc(now.hits - before.hits)
        m.blob_cache_misses.inc(now.misses - before.misses)
        self._blobs = now

    def _of(self, metric: Any, *labels: str) -> Any:
        """The metric's child for ``labels``, looked up once (labels are bounded)."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # -- node attempts -----------------------------------------------------------------

    def before_attempt(self, broker: Broker, attempt: Attempt) -> None:
        m = self.instruments
        if m is None:
            return
        if attempt.first:
            self._of(m.executions_started, attempt.workflow_id).inc()
        wait = max(0.0, time.time() - attempt.ready_at)
        self._of(m.queue_wait, attempt.node_type, attempt.lane).observe(wait)

    def after_attempt(self, broker: Broker, attempt: Attempt, result: AttemptResult) -> None:
        m = self.instruments
        if m is None:
            return
        labels = (attempt.node_type, attempt.lane)
        self._of(m.attempts, *labels, result.outcome.value).inc()
        self._of(m.duration, *labels).observe(attempt.elapsed)
        if result.retry_in is not None:
            self._of(m.retries, *labels).inc()

    # -- what the runtime reports ------------------------------------------------------

    def execution_finished(self, workflow_id: str, status: str) -> None:
        """An execution ended in this process (its last node's transition)."""
        if self.instruments is not None:
            self._of(self.instruments.executions_finished, workflow_id, status).inc()

    def recovered(self, kind: str, count: int) -> None:
        """The sweeper (or a drain) recovered ``count`` units of work of ``kind``."""
        if self.instruments is not None and count:
            self._of(self.instruments.recoveries, kind).inc(count)

    def swept(self, seconds: float) -> None:
        """One recovery sweep took ``seconds``."""
        if self.instruments is not None:
            self.instruments.sweep_duration.observe(seconds)

    # -- Dramatiq's message metrics (as dramatiq.middleware.prometheus records them) ----

    def after_nack(self, broker: Broker, message: Any) -> None:
        if self.instruments is not None:
            self._of(self.instruments.message_rejects, message.queue_name, message.actor_name).inc()

    def after_enqueue(self, broker: Broker, message: Any, delay: int | None) -> None:
        m = self.instruments
        if m is None:
            return
        if "retries" in message.options:
            self._of(m.message_retries, message.queue_name, message.actor_name).inc()
        # A delayed message that fell due is enqueued again, onto its lane's queue, by
        # the consumer that held it; unlike Dramatiq's own gauge, count it down here,
        # with the labels it was counted up with.
        held = self._delayed.pop(message.message_id, None)
        if held is not None:
            self._of(m.delayed_inprogress, *held).dec()

    def before_delay_message(self, broker: Broker, message: Any) -> None:
        if self.instruments is not None:
            labels = (message.queue_name, message.actor_name)
            self._delayed[message.message_id] = labels
            self._of(self.instruments.delayed_inprogress, *labels).inc()

    def before_process_message(self, broker: Broker, message: Any) -> None:
        m = self.instruments
        if m is None:
            return
        labels = (message.queue_name, message.actor_name)
        self._of(m.messages_inprogress, *labels).inc()
        self._message_starts[message.message_id] = time.monotonic()

    def after_process_message(
        self,
        broker: Broker,
        message: Any,
        *,
        result: Any | None = None,
        exception: BaseException | None = None,
    ) -> None:
        m = self.instruments
        if m is None:
            return
        labels = (message.queue_name, message.actor_name)
        started = self._message_starts.pop(message.message_id, time.monotonic())
        self._of(m.message_duration, *labels).observe((time.monotonic() - started) * 1000)
        self._of(m.messages_inprogress, *labels).dec()
        self._of(m.messages, *labels).inc()
        if exception is not None:
            self._of(m.message_errors, *labels).inc()

    after_skip_message = after_process_message
