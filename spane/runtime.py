"""The process runtime: builds every part from settings, in dependency order, and
declares the actors; one runtime per process (``get``, ``install``).

The composition root. What the engine's modules use of it is ``services.Services``;
nothing below the public API imports this module.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from typing import Any

import dramatiq
from sqlalchemy.exc import InterfaceError, OperationalError

from . import logs, migrations, outages, recovery, registry
from .admission import Admission, Known
from .blobs import CachingBlobStore, open_blob_store
from .broker import make_broker
from .builtins import http as http_node
from .encoder import MsgspecEncoder
from .errors import ConfigurationError
from .limits import Rules
from .messages import COORDINATOR, LANE_PRIORITY, actor_name
from .middleware import (
    CircuitBreaker,
    ClaimCheck,
    DeadLetters,
    Drain,
    Health,
    Heartbeat,
    Lanes,
    LogContext,
    Metrics,
    RateLimits,
    Stack,
    Sweeper,
    Tracing,
)
from .middleware.metric_files import run_folder
from .middleware.shared_state import open_shared_state
from .payloads import Payloads
from .registry import NodeType
from .services import Services
from .settings import Settings, from_env
from .store import Store, make_engine
from .version import __version__

__all__ = ["COORDINATOR", "LANE_PRIORITY", "Runtime", "actor_name", "current", "get", "install"]


class Runtime(Services):
    """Everything one process needs to enqueue and run workflows.

    The store comes first, then the middleware (each given what it needs), then the
    broker that runs them, then the actors on that broker.

    Args:
        settings: Where the broker, database and blobs are.
        migrate: Bring the database schema up to date on start.
    """

    def __init__(self, settings: Settings, *, migrate: bool = True) -> None:
        http_node.configure(settings.http_allowed_hosts)
        engine = make_engine(settings.database_url)
        if migrate:
            try:
                migrations.upgrade(engine)
            except (OperationalError, InterfaceError) as exc:
                raise ConfigurationError(outages.database(settings, exc)) from None
        blobs = CachingBlobStore(open_blob_store(settings.blob_url))
        payloads = Payloads(
            max_bytes=settings.max_payload_bytes,
            claim_check_bytes=settings.claim_check_bytes,
            blobs=blobs,
        )
        tracing = Tracing.from_settings(settings)
        known = Known()  # executions created here: admission needs no look-up for them
        store = Store(
            engine,
            payloads,
            lease_seconds=settings.lease_seconds,
            trace_execution=known.noting(tracing.execution),
            rules=Rules.from_settings(settings),
        )
        dramatiq.set_encoder(MsgspecEncoder())
        shared = open_shared_state(settings, store)
        identity = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        stack = Stack(
            metrics=_metrics(settings, blobs),
            drain=Drain(self._hand_back, grace=settings.drain_seconds),
            lanes=Lanes(settings),
            health=Health(max_stuck=settings.max_stuck_threads),
            log_context=LogContext(),
            tracing=tracing,
            claim_check=ClaimCheck(payloads),
            dead_letters=DeadLetters(self._record_rejected),
            sweeper=Sweeper(
                self._sweep,
                self._release_sweeper,
                interval=settings.sweep_interval,
                watch=self._watch_turns,
            ),
            breakers=CircuitBreaker(shared, store.graph),
            rate_limits=RateLimits(shared, store.graph, settings.namespace),
            heartbeat=Heartbeat(settings, store, identity, __version__),
        )
        broker = make_broker(settings, stack.in_order())
        super().__init__(
            settings=settings,
            engine=engine,
            store=store,
            payloads=payloads,
            blobs=blobs,
            tracing=tracing,
            shared=shared,
            broker=broker,
            identity=identity,
            drain=stack.drain,
            health=stack.health,
            breakers=stack.breakers,
            metrics=stack.metrics,
            admission=Admission(settings, store, broker, known),
        )
        # Imported here, not with the module: ``dramatiq spane.actors`` imports ``spane``
        # (and so this module) before the actors package, which then builds a runtime.
        from .actors import coordinator, rejected, start

        coordinator.declare(self)
        rejected.declare(self)
        start.declare(self)
        for node_type in registry.all_types():
            self._declare(node_type)
        registry.on_register(self._declare)

    def _declare(self, node_type: NodeType) -> None:
        from .actors import nodes

        nodes.declare(self, node_type)

    def _sweep(self) -> int:
        return recovery.sweep(self)

    def _watch_turns(self) -> None:
        self.dispatch(self.admission.watch())

    def _release_sweeper(self) -> None:
        self.store.release_lease(recovery.SWEEPER, self.identity)

    def _hand_back(self) -> int:
        return recovery.hand_back_all(self)

    def _record_rejected(self, message: Any, reason: str) -> None:
        from .actors import rejected

        rejected.record_rejected(self, message, reason)

    def close(self) -> None:
        """Stop declaring actors, stop the embedded worker and release connections."""
        registry.remove_listener(self._declare)
        super().close()


def _metrics(settings: Settings, blobs: CachingBlobStore) -> Metrics | None:
    """The metrics middleware, if ``SPANE_METRICS_PORT`` asks for metrics."""
    if not settings.metrics_port:
        return None
    return Metrics(
        run_folder(settings),
        settings.metrics_tenants,
        blob_stats=blobs.stats,
        serve=serve_metrics,
    )


def serve_metrics() -> int:
    """The metrics endpoint's process (Dramatiq forks it by its import path): its parts
    are built like a worker's, without migrating."""
    # Imported here: prometheus_client picks its multiprocess storage when first
    # imported, which a worker process must do only after ``Metrics`` set its folder.
    from .monitoring.server import serve

    return serve(lambda settings: Runtime(settings, migrate=False))


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get() -> Runtime:
    """Return the process runtime, creating it from the environment on first use (the
    embedded start: logging is configured then, unless an entry point did first)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            settings = from_env()
            logs.configure(settings.log_format, settings.log_level)
            _runtime = Runtime(settings)
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
