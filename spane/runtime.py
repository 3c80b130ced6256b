"""The process-wide runtime: settings, store, broker, actors and (embedded) worker."""

from __future__ import annotations

import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

import dramatiq
from dramatiq import Worker
from dramatiq.middleware import CurrentMessage
from sqlalchemy.exc import InterfaceError, OperationalError

from . import executor, logs, migrations, outages, recovery, registry, starts
from .admission import Admission, Known
from .blobs import CachingBlobStore, open_blob_store
from .broker import make_broker, queue_name
from .builtins import http as http_node
from .consumer import guard_consumers
from .encoder import UNDECODABLE, MsgspecEncoder
from .errors import ConfigurationError
from .limits import Rules
from .middleware import (
    CircuitBreaker,
    DeadLetters,
    Drain,
    Health,
    Heartbeat,
    Metrics,
    Sweeper,
    Tracing,
)
from .middleware.shared_state import open_shared_state
from .payloads import Payloads
from .producer import START_WORKFLOW
from .registry import NodeType
from .settings import Settings, from_env
from .store import Dispatch, Outcome, Store, make_engine

COORDINATOR = "spane.coordinator"


#: Dramatiq runs the prefetched message of lowest priority value first, so within one
#: worker a high-lane node overtakes queued default- and low-lane ones.
LANE_PRIORITY = {"high": 0, "default": 50, "low": 100}


def actor_name(node_type: str, lane: str) -> str:
    """Return the Dramatiq actor of a node type on a lane (one per lane, for priority)."""
    return f"spane.node.{node_type}.{lane}"


class Runtime:
    """Everything one process needs to enqueue and run workflows.

    Args:
        settings: Where the broker, database and blobs are.
        migrate: Bring the database schema up to date on start.
    """

    def __init__(self, settings: Settings, *, migrate: bool = True) -> None:
        logs.configure(settings.log_format, settings.log_level)
        http_node.configure(settings.http_allowed_hosts)
        self.settings = settings
        self.engine = make_engine(settings.database_url)
        if migrate:
            try:
                migrations.upgrade(self.engine)
            except (OperationalError, InterfaceError) as exc:
                raise ConfigurationError(outages.database(settings, exc)) from None
        self.blobs = CachingBlobStore(open_blob_store(settings.blob_url))
        self.payloads = Payloads(
            max_bytes=settings.max_payload_bytes,
            claim_check_bytes=settings.claim_check_bytes,
            blobs=self.blobs,
        )
        self.tracing = Tracing.from_settings(settings)
        known = Known()  # admission seam: executions created here need no look-up
        self.store = Store(
            self.engine,
            self.payloads,
            lease_seconds=settings.lease_seconds,
            trace_execution=known.noting(self.tracing.execution),
            rules=Rules.from_settings(settings),
        )
        dramatiq.set_encoder(MsgspecEncoder())
        self.shared = open_shared_state(settings, self.store)
        self.broker = make_broker(
            settings, self.shared, self.store.graph, self.tracing, self.payloads
        )
        guard_consumers(self.broker)
        self.admission = Admission(settings, self.store, self.broker, known, self.dispatch)
        self.last_heartbeat = 0.0
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.drain: Drain | None = None
        self.health: Health | None = None
        self.breakers = next(m for m in self.broker.middleware if isinstance(m, CircuitBreaker))
        self.metrics: Metrics | None = None
        for middleware in self.broker.middleware:
            if isinstance(middleware, Sweeper):
                middleware.sweep = lambda: recovery.sweep(self)
            elif isinstance(middleware, Drain):
                middleware.hand_back = lambda: recovery.hand_back_all(self)
                self.drain = middleware
            elif isinstance(middleware, Health):
                self.health = middleware
            elif isinstance(middleware, Metrics):
                middleware.blob_stats = self.blobs.stats
                self.metrics = middleware
            elif isinstance(middleware, Heartbeat):
                middleware.store, middleware.worker_id = self.store, self.identity
            elif isinstance(middleware, DeadLetters):
                middleware.record = lambda message, reason: recovery.record_rejected(
                    self, message, reason
                )
        self._worker: Worker | None = None
        self._lock = threading.Lock()
        dramatiq.Actor(
            self._coordinate,
            broker=self.broker,
            actor_name=COORDINATOR,
            queue_name=queue_name(settings, "high"),
            priority=0,
            options={},
        )
        dramatiq.Actor(
            self._undecodable,
            broker=self.broker,
            actor_name=UNDECODABLE,
            queue_name=queue_name(settings, "high"),
            priority=0,
            options={},
        )
        dramatiq.Actor(
            self._start,
            broker=self.broker,
            actor_name=START_WORKFLOW,
            queue_name=queue_name(settings, "default"),
            priority=LANE_PRIORITY["default"],
            options={},
        )
        for node_type in registry.all_types():
            self._declare(node_type)
        registry.on_register(self._declare)

    @property
    def healthy(self) -> bool:
        """Whether this worker takes work: not draining, not too many threads stuck.

        What a readiness probe reports.
        """
        draining = self.drain is not None and self.drain.draining.is_set()
        return not draining and (self.health is None or self.health.healthy)

    # -- actors ----------------------------------------------------------------------

    def _declare(self, node_type: NodeType) -> None:
        """Declare the node type's actors: one per lane, each bound to its lane's queue."""

        def run(execution_id: str, node_id: str, attempt: int) -> None:
            executor.run_node(self, execution_id, node_id, attempt)

        run.__name__ = run.__qualname__ = f"node_{node_type.name}"
        for lane, priority in LANE_PRIORITY.items():
            name = actor_name(node_type.name, lane)
            if name in self.broker.actors:
                continue  # re-registration replaces the code; the actor looks it up per call
            dramatiq.Actor(
                run,
                broker=self.broker,
                actor_name=name,
                queue_name=queue_name(self.settings, lane),
                priority=priority,
                options={},
            )

    def _coordinate(
        self,
        execution_id: str,
        event: str,
        node_id: str = "",
        attempt: int = 0,
        child_id: str = "",
    ) -> None:
        """The coordinator actor: advances executions on timer and wake-up events."""
        if event == "timer":
            self.apply(self.store.fire_timer(execution_id, node_id, attempt))
        elif event == "child_ended":
            executor.wake_parent(self, execution_id, node_id, child_id)

    def _start(
        self,
        workflow_id: str,
        input: Any = None,
        tenant: str = "default",
        idempotency_key: str | None = None,
        priority: str | None = None,
        version: int | None = None,
    ) -> None:
        """The start actor: create an execution asked for by a message (``spane.starts``)."""
        starts.start_from_message(
            self,
            CurrentMessage.get_current_message(),
            workflow_id,
            input,
            tenant=tenant,
            idempotency_key=idempotency_key,
            priority=priority,
            version=version,
        )

    def _undecodable(self, raw: str, error: str) -> None:
        """The actor of messages that could not be decoded: record a dead letter."""
        message = CurrentMessage.get_current_message()
        queue = message.queue_name if message is not None else ""
        recovery.record_undecodable(self, raw, error, queue)

    # -- sending ---------------------------------------------------------------------

    def dispatch(self, dispatches: Iterable[Dispatch]) -> None:
        """Send node messages (after the transaction that queued them committed).

        One ready successor may be kept by the calling worker thread to run inline.
        """
        draining = self.drain is not None and self.drain.draining.is_set()
        for d in self.admission.admit(dispatches):  # admission seam: limits and turns
            if not draining and executor.continuation.take(d):
                continue
            message: dramatiq.Message[Any] = dramatiq.Message(
                queue_name=queue_name(self.settings, d.lane),
                actor_name=actor_name(d.type, d.lane),
                args=(),
                kwargs={"execution_id": d.execution_id, "node_id": d.node_id, "attempt": d.attempt},
                options={},
            )
            # Rounded up: a message due a fraction of a millisecond early would find its
            # retry's backoff not yet over and be sent once more.
            delay = math.ceil(d.delay * 1000)
            self.broker.enqueue(message, delay=delay if delay > 0 else None)

    def send_timer(self, execution_id: str, node_id: str, attempt: int, until: float) -> None:
        """Send the coordinator a wake-up for a timer (the database sweep is the backstop)."""
        delay = int(max(0.0, until - time.time()) * 1000)
        if delay >= 7 * 24 * 3600 * 1000:
            return  # beyond the broker's delay limit; the sweeper fires it
        self._coordinator_message(
            {
                "execution_id": execution_id,
                "event": "timer",
                "node_id": node_id,
                "attempt": attempt,
            },
            delay,
        )

    def _coordinator_message(self, kwargs: dict[str, Any], delay: int = 0) -> None:
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=queue_name(self.settings, "high"),
            actor_name=COORDINATOR,
            args=(),
            kwargs=kwargs,
            options={},
        )
        self.broker.enqueue(message, delay=delay if delay > 0 else None)

    def apply(self, outcome: Outcome, *, execution_id: str = "") -> None:
        """Carry out what a committed transition asks for."""
        self.dispatch(outcome.dispatches)
        if outcome.ended and self.metrics is not None:
            self.metrics.execution_finished(outcome.workflow_id, outcome.ended)
        if outcome.ended and outcome.parent_id:
            self.wake(outcome.parent_id, outcome.parent_node_id or "", outcome.child_id)

    def wake(self, parent_id: str, node_id: str, child_id: str) -> None:
        """Ask the coordinator to wake a parent whose child ended (the sweep backs it up)."""
        self._coordinator_message(
            {
                "execution_id": parent_id,
                "event": "child_ended",
                "node_id": node_id,
                "child_id": child_id,
            }
        )

    def sweep_timers(self) -> int:
        """Fire every timer that fell due; return how many fired."""
        fired = 0
        for execution_id, node_id, attempt in self.store.due_timers(time.time()):
            outcome = self.store.fire_timer(execution_id, node_id, attempt)
            if outcome.applied:
                fired += 1
            self.apply(outcome)
        return fired

    # -- embedded worker -------------------------------------------------------------

    def ensure_worker(self) -> None:
        """Start the in-process worker when running embedded (no broker configured)."""
        if not self.settings.embedded:
            return
        with self._lock:
            if self._worker is None:
                self._worker = Worker(
                    self.broker, worker_threads=self.settings.embedded_threads, worker_timeout=50
                )
                self._worker.start()
                # Messages of the in-process broker died with any earlier process on this
                # database: send queued nodes again now instead of after their lease.
                self.dispatch(self.store.queued_everywhere())

    def close(self) -> None:
        """Stop the embedded worker and release connections."""
        registry.remove_listener(self._declare)
        with self._lock:
            if self._worker is not None:
                self._worker.stop(timeout=10_000)
                self._worker = None
        self.broker.close()
        self.tracing.flush()
        self.engine.dispose()


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get() -> Runtime:
    """Return the process runtime, creating it from the environment on first use."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime(from_env())
            dramatiq.set_broker(_runtime.broker)
        return _runtime


def install(runtime: Runtime | None) -> Runtime | None:
    """Make ``runtime`` the process runtime (tests, embedding apps); return the old one."""
    global _runtime
    with _runtime_lock:
        old, _runtime = _runtime, runtime
        if runtime is not None:
            dramatiq.set_broker(runtime.broker)
        return old


def current() -> Any:
    """Return the process runtime if one exists, else None."""
    return _runtime
