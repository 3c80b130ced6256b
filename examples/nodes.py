"""Node types of ``examples/order.yaml``: the kind of module an application writes.

Embedded (no services needed)::

    spane -m examples.nodes run examples/order.yaml --input '{"order_id": "A-7", "total": 250}'

With workers elsewhere (Redis and PostgreSQL from the SPANE_* environment)::

    dramatiq spane.actors examples.nodes
    spane register examples/order.yaml
    spane -m examples.nodes start order-fulfilment --input '{"order_id": "A-7"}'
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import msgspec

import spane


class FetchConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Where orders are looked up."""

    source: str = "shop"


class NotifyConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """How the customer is told."""

    channel: str = "email"


@spane.node_type("fetch_order", config=FetchConfig, timeout="30s")
def fetch_order(ctx: spane.NodeContext) -> Any:
    """Look the order up (here: made up from the input)."""
    time.sleep(0.05)
    return {
        "id": ctx.input["order_id"],
        "customer": ctx.input.get("customer", "grace@example.com"),
        "total": float(ctx.input.get("total", 42.0)),
        "source": ctx.config.source,
    }


@spane.node_type("charge_card", retry={"max_attempts": 5, "delay": "500ms", "max_delay": "10s"})
def charge_card(ctx: spane.NodeContext) -> Any:
    """Charge the customer once, however often this attempt is retried or redelivered."""
    order = ctx.input
    # A payment API takes an idempotency key so that a retried request never charges twice;
    # ctx.idempotency_key is stable across attempts of this node in this execution.
    payment_id = "pay_" + hashlib.sha256(ctx.idempotency_key.encode()).hexdigest()[:12]
    ctx.log.info("card charged", payment_id=payment_id, amount=order["total"])
    return {**order, "payment": {"id": payment_id, "amount": order["total"]}}


@spane.node_type("notify", lane="low", config=NotifyConfig)
def notify(ctx: spane.NodeContext) -> Any:
    """Tell the customer their order is on its way."""
    order = ctx.input
    return {
        "order": order["id"],
        "sent_to": order["customer"],
        "channel": ctx.config.channel,
        "message": f"Order {order['id']} is on its way ({order['route']}).",
    }
