"""Completion callbacks: POST an execution's outcome to its ``on_finish`` URL when it ends.

The sweep (one worker at a time) claims what is due and hands each post to a small thread
pool, so a slow receiver never delays timers or recovery. Delivery is at least once: a
claim is a lease, and a post whose worker died is claimed again when the lease runs out.
Each end of an execution has one ``Idempotency-Key`` (``<execution id>:<end time in ms>``),
the same on every try, so receivers can drop repeats; a ``secret_env`` signs the body
(``Spane-Signature``, as webhooks are signed).
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import msgspec
import structlog

from . import settings, signatures
from .definitions import Callback
from .payloads import Payloads
from .store.callbacks import DueCallback

if TYPE_CHECKING:
    from .services import Services

log = structlog.get_logger("spane.callbacks")

#: Seconds a claimed post may take before another sweep may claim it again.
LEASE = 60.0
#: Seconds one post may take.
TIMEOUT = 10.0
#: Tries before giving up; the waits between them double from 1 s up to 10 minutes.
MAX_ATTEMPTS = 12

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


class Finished(msgspec.Struct):
    """The body of a callback. ``output`` is left out (null, ``output_offloaded`` true)
    when it rests in the blob store; fetch it from the API then."""

    execution_id: str
    workflow_id: str
    version: int
    tenant: str
    status: str
    error: str | None
    finished_at: float
    output: msgspec.Raw
    output_offloaded: bool


def deliver_due(runtime: Services) -> int:
    """Claim the callbacks due now and start posting them; return how many."""
    due = runtime.store.callbacks.claim_due(time.time(), lease=LEASE)
    for callback in due:
        _executor().submit(deliver, runtime, callback)
    return len(due)


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="spane-callback")
        return _pool


def body(due: DueCallback) -> bytes:
    """Return the JSON body posted for ``due``."""
    offloaded = not Payloads.inline(due.output)
    output = b"null" if due.output is None or offloaded else due.output.encode()
    return msgspec.json.encode(
        Finished(
            execution_id=due.execution_id,
            workflow_id=due.workflow_id,
            version=due.version,
            tenant=due.tenant,
            status=due.status,
            error=due.error,
            finished_at=due.finished_at,
            output=msgspec.Raw(output),
            output_offloaded=offloaded,
        )
    )


def deliver(runtime: Services, due: DueCallback) -> None:
    """Post one callback and record the outcome (sent, retry later, or given up)."""
    callbacks = runtime.store.callbacks
    attempt = due.attempts + 1
    try:
        _post(msgspec.json.decode(due.on_finish, type=Callback), due)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        if attempt >= MAX_ATTEMPTS:
            log.error("callback given up", execution_id=due.execution_id, error=error)
            callbacks.give_up(due.execution_id, attempt, error)
        else:
            wait = min(2.0 ** (attempt - 1), 600.0)
            log.warning(
                "callback failed", execution_id=due.execution_id, error=error, retry_in=wait
            )
            callbacks.retry_at(due.execution_id, attempt, time.time() + wait, error)
        return
    callbacks.sent(due.execution_id, attempt)


def _post(callback: Callback, due: DueCallback) -> None:
    data = body(due)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "spane-callback",
        "Idempotency-Key": f"{due.execution_id}:{round(due.finished_at * 1000)}",
    }
    if callback.secret_env:
        secret = settings.secret(callback.secret_env)
        if not secret:
            raise RuntimeError(f"${callback.secret_env} is not set in the workers' environment")
        headers[signatures.HEADER] = signatures.sign(secret, data)
    request = urllib.request.Request(callback.url, data=data, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        response.read()
