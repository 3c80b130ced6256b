"""Signals: ``spane.signal(execution_id, name, payload)`` completes a ``wait_for`` node.

The node parks in the database (no thread waits), like a ``delay`` timer. A signal sent
before the node is reached is kept and taken when it parks; the payload becomes the
node's output. The sweep completes what a crash or a pause left undelivered and fails
waits whose deadline passed (``on_timeout: fail``); ``on_timeout: continue`` rides on the
node's durable timer, which completes it with ``default``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import structlog

from . import coordinator
from .context import AwaitSignal
from .errors import SpaneError
from .store.signals import Delivery

if TYPE_CHECKING:
    from .services import Services
    from .store import Claim

log = structlog.get_logger("spane.signals")


def send(
    rt: Services, execution_id: str, name: str, payload: Any, *, signal_id: str | None
) -> bool:
    """Store a signal and deliver it if a node waits on it; False for a repeated id."""
    stored, delivery = rt.store.add_signal(execution_id, name, payload, signal_id)
    if delivery is not None:
        deliver(rt, delivery)
    return stored


def deliver(rt: Services, delivery: Delivery) -> bool:
    """Complete a parked ``wait_for`` attempt with the signal it took."""
    claim = delivery.claim
    value = rt.payloads.unpack(claim.tenant, delivery.payload, what=f"signal to {claim.node_id}")
    outcome = rt.store.complete_node(claim, value)
    coordinator.advance(rt, outcome)
    return outcome.applied


def park(rt: Services, claim: Claim, wait: AwaitSignal, *, continue_on_fail: bool) -> None:
    """Park a ``wait_for`` attempt on its signal, or complete it with one already sent."""
    try:
        parked, delivery = rt.store.park_for_signal(
            claim, wait.name, deadline=wait.until, on_timeout=wait.on_timeout, default=wait.default
        )
    except SpaneError as exc:
        coordinator.advance(
            rt, rt.store.fail_node(claim, str(exc), continue_on_fail=continue_on_fail)
        )
        return
    if delivery is not None:
        deliver(rt, delivery)
    elif parked and wait.until is not None and wait.on_timeout == "continue":
        rt.send_timer(claim.execution_id, claim.node_id, claim.attempt, wait.until)


def sweep(rt: Services) -> int:
    """Deliver signals left undelivered, fail waits past their deadline; return how many
    nodes moved."""
    moved = sum(deliver(rt, d) for d in rt.store.pending_deliveries())
    for claim, name in rt.store.expired_signal_waits(time.time()):
        node = rt.store.graph(claim.workflow_id, claim.version).nodes[claim.node_id]
        error = f"no signal {name!r} arrived before the timeout"
        outcome = rt.store.fail_node(claim, error, continue_on_fail=node.continue_on_fail)
        coordinator.advance(rt, outcome)
        moved += outcome.applied
    return moved
