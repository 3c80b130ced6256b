"""Node types of the bundled demo (``spane demo``): a small order pipeline.

Each step sleeps a little so the live view has something to show; the whole run takes
about three seconds. The workflow itself is ``spane/examples/demo.yaml``.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import spane
from spane import codec as spane_codec

SAMPLE_INPUT: dict[str, Any] = {"order_id": "A-1042", "customer": "Ada Lovelace"}

_BASKET: list[dict[str, Any]] = [
    {"sku": "KB-01", "name": "Mechanical keyboard", "qty": 1, "price": 89.0},
    {"sku": "MS-07", "name": "Wireless mouse", "qty": 1, "price": 34.5},
    {"sku": "CB-12", "name": "USB-C cable", "qty": 2, "price": 12.99},
]


@spane.node_type("demo_fetch_order")
def fetch_order(ctx: spane.NodeContext) -> Any:
    """Look the order up (here: build it from the input, with a sample basket)."""
    time.sleep(0.2)
    data = ctx.input if isinstance(ctx.input, dict) else {}
    items = data.get("items") or _BASKET
    total = round(sum(item["qty"] * item["price"] for item in items), 2)
    return {
        "id": data.get("order_id", "A-0001"),
        "customer": data.get("customer", "Grace Hopper"),
        "items": items,
        "total": total,
        "currency": "EUR",
    }


@spane.node_type("demo_review")
def review(ctx: spane.NodeContext) -> Any:
    """Check a large order for fraud before it ships."""
    time.sleep(0.3)
    return {**ctx.input, "route": "manual review", "approved": True}


@spane.node_type("demo_ship_fast")
def ship_fast(ctx: spane.NodeContext) -> Any:
    """Small orders skip the review."""
    time.sleep(0.1)
    return {**ctx.input, "route": "fast lane", "approved": True}


@spane.node_type("demo_pack")
def pack(ctx: spane.NodeContext) -> Any:
    """Join both paths: exactly one of them ran, the other was skipped."""
    time.sleep(0.1)
    (order,) = ctx.input.values()
    boxes = 1 + sum(item["qty"] for item in order["items"]) // 4
    return {**order, "parcel": {"boxes": boxes}}


@spane.node_type("demo_book_courier")
def book_courier(ctx: spane.NodeContext) -> Any:
    """Book a pickup; the courier's API is busy on the first attempt."""
    time.sleep(0.1)
    if ctx.attempt == 1:
        raise spane.NodeFailed("courier API busy (simulated); retrying")
    # The idempotency key is the same on every attempt, so a retried booking is not doubled.
    reference = hashlib.sha256(ctx.idempotency_key.encode()).hexdigest()[:8].upper()
    return {**ctx.input, "courier": {"carrier": "Spane Express", "tracking": f"SPX-{reference}"}}


@spane.node_type("demo_render_invoice")
def render_invoice(ctx: spane.NodeContext) -> Any:
    """Render the invoice: ~80 KB, over the 50 KB claim-check threshold, so it is
    stored once in the blob store and travels as a reference."""
    time.sleep(0.1)
    order = ctx.input
    lines = [
        f"{i:05d} {order['order']} {order['currency']} {order['total']:>10.2f} "
        + hashlib.sha256(f"{order['order']}:{i}".encode()).hexdigest()
        for i in range(800)
    ]
    return {"number": f"INV-{order['order']}", "pages": 1 + len(lines) // 50, "lines": lines}


@spane.node_type("demo_file_invoice")
def file_invoice(ctx: spane.NodeContext) -> Any:
    """File the rendered invoice; it arrives resolved, never as a reference."""
    invoice = ctx.input
    size = len(spane_codec.encode(invoice))
    return {"number": invoice["number"], "pages": invoice["pages"], "bytes": size}
