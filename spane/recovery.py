"""Worker-side recovery: the sweep, drain hand-back, and dead letters of messages."""

from __future__ import annotations

import base64
import hashlib
import time
from typing import TYPE_CHECKING, Any

import structlog

from . import codec, executor
from .inflight import HandedBack, inflight

if TYPE_CHECKING:
    from .runtime import Runtime

log = structlog.get_logger("spane.recovery")
SWEEPER = "sweeper"


def sweep(runtime: Runtime) -> int:
    """One pass: renew our leases, then (if this worker holds the sweeper lease) fire
    due timers, wake parents, and send again what the broker lost or a dead worker held."""
    now = time.time()
    started = time.monotonic()
    claims = [entry.claim for entry in inflight.entries()]
    if claims and now - runtime.last_heartbeat >= runtime.settings.lease_seconds / 3:
        runtime.store.renew_leases(claims)
        runtime.last_heartbeat = now
    # The lease outlives a few missed sweeps, and a stalled or dead holder is replaced
    # soon after (two sweepers at once would be harmless: every recovery is guarded).
    ttl = max(1.0, 4 * runtime.settings.sweep_interval)
    if not runtime.store.take_lease(SWEEPER, runtime.identity, ttl):
        return 0
    fired = runtime.sweep_timers()
    parents = runtime.store.unwoken_parents()
    for parent_id, node_id, child_id in parents:
        executor.wake_parent(runtime, parent_id, node_id, child_id)
    lost = runtime.store.recover_lost(now)
    if lost:
        log.info("recovered lost node messages", count=len(lost))
        runtime.dispatch(lost)
    if runtime.metrics is not None:
        runtime.metrics.recovered("timer_fired", fired)
        runtime.metrics.recovered("parent_woken", len(parents))
        runtime.metrics.recovered("message_resent", len(lost))
        runtime.metrics.swept(time.monotonic() - started)
    return fired + len(lost)


def hand_back_all(runtime: Runtime) -> int:
    """Give every attempt still running in this process back to the queue."""
    count = 0
    for entry in inflight.entries():
        dispatch = runtime.store.hand_back(entry.claim, "handed back by a draining worker")
        if dispatch is None:
            continue
        inflight.interrupt(entry, HandedBack)
        runtime.dispatch([dispatch])
        count += 1
    if runtime.metrics is not None:
        runtime.metrics.recovered("handed_back", count)
    return count


def record_rejected(runtime: Runtime, message: Any, reason: str) -> None:
    """Dead-letter a message the broker rejects; a node message also fails its node."""
    kwargs = message.kwargs or {}
    if message.actor_name.startswith("spane.node.") and "execution_id" in kwargs:
        claim = runtime.store.claim_node(
            kwargs["execution_id"], kwargs["node_id"], int(kwargs.get("attempt", 0))
        )
        if claim is not None:
            error = (
                f"message for actor {message.actor_name!r} was rejected ({reason}); "
                "is the node type's module loaded in the workers (SPANE_MODULES)?"
            )
            runtime.apply(runtime.store.fail_node(claim, error, continue_on_fail=False))
            return
    raw = codec.dumps(message.asdict())
    runtime.store.add_dead_letter(
        kind="message",
        digest=hashlib.sha256(raw.encode()).hexdigest(),
        queue=message.queue_name,
        actor=message.actor_name,
        reason=reason,
        message=raw,
    )


def record_undecodable(runtime: Runtime, raw: str, error: str, queue: str = "") -> None:
    """Dead-letter a message whose bytes (``raw``, base64) could not be decoded, once per
    content. Text is kept as it is; bytes that are not text (or hold NUL, which
    PostgreSQL text refuses) are kept as ``base64:...``."""
    data = base64.b64decode(raw)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = "\x00"
    recorded = runtime.store.add_dead_letter(
        kind="message",
        digest=hashlib.sha256(data).hexdigest(),
        queue=queue or None,
        reason=f"message could not be decoded: {error}",
        message=text if "\x00" not in text else "base64:" + raw,
    )
    log.warning("undecodable message dead-lettered", new=recorded, error=error)
