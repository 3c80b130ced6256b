"""Starting workflows by message, from processes that reach only the broker.

A web app configured with ``SPANE_BROKER_URL`` (and ``SPANE_BLOB_URL`` for large
inputs), but with no database access, sends a start message; a worker validates it and
creates the execution. In a process that has a Spane runtime (a worker, an app using
the database, or embedded mode), the message goes through that runtime's broker.
"""

from __future__ import annotations

import threading
from typing import Any

import dramatiq

from . import runtime
from .blobs import CachingBlobStore, open_blob_store
from .broker import make_broker
from .encoder import MsgspecEncoder
from .messages import START_WORKFLOW, queue_name
from .middleware import Tracing, sending_middleware
from .payloads import Payloads
from .settings import Settings, from_env


class StartWorkflow:
    """Sends start messages: ``start_workflow.send(workflow_id, input, tenant=...)``.

    Not a Dramatiq actor in the sending process (that would need the worker's runtime),
    but it builds the same message the worker's ``spane.start_workflow`` actor takes.
    """

    actor_name = START_WORKFLOW

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._broker: tuple[dramatiq.Broker, Settings] | None = None

    def message(
        self,
        workflow_id: str,
        input: Any = None,
        /,
        *,
        tenant: str = "default",
        idempotency_key: str | None = None,
        priority: str | None = None,
        version: int | None = None,
    ) -> dramatiq.Message[Any]:
        """Build a start message (the message id is the default idempotency key)."""
        _, settings = self._target()
        return dramatiq.Message(
            queue_name=queue_name(settings, priority or "default"),
            actor_name=START_WORKFLOW,
            args=(),
            kwargs={
                "workflow_id": workflow_id,
                "input": input,
                "tenant": tenant,
                "idempotency_key": idempotency_key,
                "priority": priority,
                "version": version,
            },
            # A large input travels as a reference to a message blob (the claim check);
            # the worker stores it again, under the tenant, when it creates the execution.
            options={},
        )

    def send(
        self,
        workflow_id: str,
        input: Any = None,
        /,
        *,
        tenant: str = "default",
        idempotency_key: str | None = None,
        priority: str | None = None,
        version: int | None = None,
    ) -> dramatiq.Message[Any]:
        """Send a start message and return it; a worker creates the execution.

        Invalid inputs are not refused here (there is no database to check against):
        the worker records them as a dead letter with the validation errors.
        """
        message = self.message(
            workflow_id,
            input,
            tenant=tenant,
            idempotency_key=idempotency_key,
            priority=priority,
            version=version,
        )
        return self.enqueue(message)

    def enqueue(self, message: dramatiq.Message[Any]) -> dramatiq.Message[Any]:
        """Send a message built by ``message`` (again: the worker starts it once)."""
        broker, _ = self._target()
        result: dramatiq.Message[Any] = broker.enqueue(message)
        return result

    def _target(self) -> tuple[dramatiq.Broker, Settings]:
        current = runtime.current()
        if current is not None:
            current.ensure_worker()
            return current.broker, current.settings
        settings = from_env()
        if settings.embedded:
            rt = runtime.get()
            rt.ensure_worker()
            return rt.broker, rt.settings
        with self._lock:
            if self._broker is None:
                self._broker = (_sending_broker(settings), settings)
            return self._broker


def _sending_broker(settings: Settings) -> dramatiq.Broker:
    """A broker for sending only: Spane's encoder and claim check, no database."""
    dramatiq.set_encoder(MsgspecEncoder())
    payloads = Payloads(
        max_bytes=settings.max_payload_bytes,
        claim_check_bytes=settings.claim_check_bytes,
        blobs=CachingBlobStore(open_blob_store(settings.blob_url)),
    )
    return make_broker(settings, sending_middleware(payloads, Tracing.from_settings(settings)))


start_workflow = StartWorkflow()
send_start = start_workflow.send
