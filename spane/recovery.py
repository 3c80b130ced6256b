"""Worker-side recovery: the sweep and the drain's hand-back."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import structlog

from . import backlog, callbacks, clock, coordinator
from .broker import queue_name
from .inflight import HandedBack, inflight

if TYPE_CHECKING:
    from .services import Services

log = structlog.get_logger("spane.recovery")
SWEEPER = "sweeper"


def sweep(runtime: Services) -> int:
    """One pass: renew our leases, then (if this worker holds the sweeper lease) fire
    due timers, wake parents, send again what the broker lost or a dead worker held, and
    post the completion callbacks that are due."""
    now = time.time()
    started = time.monotonic()
    runtime.health.check()
    if now - runtime.last_heartbeat >= runtime.settings.lease_seconds / 3:
        runtime.store.renew_leases(inflight.heartbeat_keys())
        runtime.last_heartbeat = now
    # The lease outlives a few missed sweeps, and a stalled or dead holder is replaced
    # soon after (two sweepers at once would be harmless: every recovery is guarded).
    ttl = max(1.0, 4 * runtime.settings.sweep_interval)
    leader = runtime.store.take_lease(SWEEPER, runtime.identity, ttl)
    # Nodes released from the database: their tenant's turn, or a concurrency slot freed.
    runtime.dispatch(runtime.admission.sweep(leader=leader))
    if not leader:
        return 0
    fired = coordinator.fire_due_timers(runtime) + clock.tick(runtime)
    parents = runtime.store.unwoken_parents()
    for parent_id, node_id, child_id in parents:
        coordinator.wake_parent(runtime, parent_id, node_id, child_id)
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


def resend_lost(runtime: Services, now: float) -> int:
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


def hand_back_all(runtime: Services) -> int:
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
