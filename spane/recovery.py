"""Worker-side recovery: the sweep, drain hand-back, and dead letters of messages."""

from __future__ import annotations

import base64
import hashlib
import time
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

from . import backlog, callbacks, clock, executor
from .broker import queue_name
from .inflight import HandedBack, inflight

if TYPE_CHECKING:
    from .runtime import Runtime

log = structlog.get_logger("spane.recovery")
SWEEPER = "sweeper"


def sweep(runtime: Runtime) -> int:
    """One pass: renew our leases, then (if this worker holds the sweeper lease) fire
    due timers, wake parents, send again what the broker lost or a dead worker held, and
    post the completion callbacks that are due."""
    now = time.time()
    started = time.monotonic()
    if runtime.health is not None:
        runtime.health.check()
    if now - runtime.last_heartbeat >= runtime.settings.lease_seconds / 3:
        runtime.store.renew_leases(inflight.heartbeat_keys())
        runtime.last_heartbeat = now
    # The lease outlives a few missed sweeps, and a stalled or dead holder is replaced
    # soon after (two sweepers at once would be harmless: every recovery is guarded).
    ttl = max(1.0, 4 * runtime.settings.sweep_interval)
    leader = runtime.store.take_lease(SWEEPER, runtime.identity, ttl)
    runtime.admission.sweep(leader=leader)  # admission seam: turns and freed slots
    if not leader:
        return 0
    fired = runtime.sweep_timers() + clock.tick(runtime)
    parents = runtime.store.unwoken_parents()
    for parent_id, node_id, child_id in parents:
        executor.wake_parent(runtime, parent_id, node_id, child_id)
    superseded = runtime.store.recover_lost(now)
    if superseded:
        log.info("attempts of unresponsive workers queued again", count=len(superseded))
        runtime.dispatch(superseded)
    callbacks.deliver_due(runtime)
    handled = resend_lost(runtime, now)
    if runtime.metrics is not None:
        runtime.metrics.recovered("timer_fired", fired)
        runtime.metrics.recovered("parent_woken", len(parents))
        runtime.metrics.recovered("attempt_superseded", len(superseded))
        runtime.metrics.swept(time.monotonic() - started)
    return fired + len(superseded) + handled


def resend_lost(runtime: Runtime, now: float) -> int:
    """Send again the overdue queued nodes whose message the broker no longer has.

    Overdue nodes still waiting their turn behind a backlog get a new lease instead
    (see ``backlog``). Returns how many overdue nodes were handled.
    """
    overdue = runtime.store.overdue_queued(now)
    if not overdue:
        return 0
    oldest: dict[str, float | None] = {}
    lost: set[tuple[str, str, int]] = set()
    for item in overdue:
        queue = queue_name(runtime.settings, item.dispatch.lane)
        if queue not in oldest:
            oldest[queue] = backlog.oldest_waiting(runtime.broker, queue)
        if backlog.is_lost(oldest[queue], item.since):
            d = item.dispatch
            lost.add((d.execution_id, d.node_id, d.attempt))
    current = runtime.store.extend_queued([item.dispatch for item in overdue], now)
    resend = [d for d in current if (d.execution_id, d.node_id, d.attempt) in lost]
    if resend:
        log.info("lost node messages sent again", count=len(resend))
        runtime.dispatch(resend)
    if runtime.metrics is not None:
        runtime.metrics.recovered("message_resent", len(resend))
    return len(overdue)


def hand_back_all(runtime: Runtime) -> int:
    """Give every attempt still running in this process back to the queue."""
    count = 0
    for entry in inflight.running():
        dispatch = runtime.store.hand_back(entry.claim, "handed back by a draining worker")
        if dispatch is None:
            continue
        if inflight.fence(entry, HandedBack):
            entry.recorded.set()
        runtime.dispatch([dispatch])
        count += 1
    if runtime.metrics is not None:
        runtime.metrics.recovered("handed_back", count)
    return count


def record_rejected(runtime: Runtime, message: Any, reason: str) -> None:
    """Dead-letter a message the broker rejects, once per content.

    Messages are untrusted input, so a rejected one changes no execution: anyone who can
    write to the broker could name another execution's node in it. A node message to
    an actor this worker lacks (its node type's module is not loaded) leaves the node
    queued; the sweeper sends it again after its lease, for a worker that has the type.
    """
    if str(message.actor_name).startswith("spane.node."):
        reason += (
            "; is the node type's module loaded in the workers (SPANE_MODULES)? "
            "The node stays queued for a worker that has it"
        )
    raw = msgspec.json.encode(message.asdict(), enc_hook=repr).decode()
    # The content is the actor and its arguments: copies sent again (by the sweeper, or
    # redelivered) carry new ids and timestamps but are one dead letter.
    content = msgspec.json.encode(
        [message.queue_name, message.actor_name, message.args, message.kwargs],
        enc_hook=repr,
        order="sorted",
    )
    runtime.store.add_dead_letter(
        kind="message",
        digest=hashlib.sha256(content).hexdigest(),
        queue=_name(message.queue_name),
        actor=_name(message.actor_name),
        reason=reason.replace("\x00", "\\x00"),
        message=raw,  # JSON escapes NUL, which PostgreSQL text refuses
    )


def _name(value: object) -> str:
    """A queue or actor name from a message, fit for its column on every backend."""
    return str(value).replace("\x00", "\\x00")[:200]


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
