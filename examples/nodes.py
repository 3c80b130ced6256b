"""Node types of ``examples/order.yaml``: the kind of module an application writes.

Embedded (no services needed)::

    spane -m examples.nodes run examples/order.yaml --input '{"order_id": "A-7", "total": 250}'

With workers elsewhere (Redis and PostgreSQL from the SPANE_* environment)::

    dramatiq spane.actors examples.nodes
    spane register examples/order.yaml
    spane -m examples.nodes start order-fulfilment --input '{"order_id": "A-7"}'
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import time
from pathlib import Path
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


def ledger() -> sqlite3.Connection:
    """The payments ledger this example charges into (a stand-in for a payment API)."""
    path = Path(os.environ.get("EXAMPLE_LEDGER", ".spane/example-ledger.db"))
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS payments (key TEXT PRIMARY KEY, payment_id TEXT, "
        "order_id TEXT, amount REAL)"
    )
    return conn


@spane.node_type("charge_card", retry={"max_attempts": 5, "delay": "500ms", "max_delay": "10s"})
def charge_card(ctx: spane.NodeContext) -> Any:
    """Charge the customer exactly once, however often this node is retried, redelivered,
    recovered from a dead worker or replayed.

    Spane runs node code at least once per attempt; the side effect is made exactly-once
    by keying it on ``ctx.idempotency_key``, stable for this execution and node. A payment
    API takes it as its idempotency key; here a ledger's primary key plays that part.
    """
    order = ctx.input
    payment_id = "pay_" + hashlib.sha256(ctx.idempotency_key.encode()).hexdigest()[:12]
    with contextlib.closing(ledger()) as conn, conn:
        charged = conn.execute(
            "INSERT OR IGNORE INTO payments VALUES (?, ?, ?, ?)",
            (ctx.idempotency_key, payment_id, order["id"], order["total"]),
        ).rowcount
    ctx.log.info("card charged" if charged else "already charged", payment_id=payment_id)
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
