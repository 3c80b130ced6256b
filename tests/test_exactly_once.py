"""A node's side effect made exactly-once with ``ctx.idempotency_key`` (examples/nodes.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import spane
from spane.runtime import Runtime

ORDER = Path(__file__).resolve().parent.parent / "examples" / "order.yaml"


def payments(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT order_id, payment_id FROM payments ORDER BY order_id"
        ).fetchall()


def test_charge_happens_once_despite_duplicates_and_replays(
    rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = tmp_path / "ledger.db"
    monkeypatch.setenv("EXAMPLE_LEDGER", str(ledger))
    import examples.nodes  # noqa: F401  (registers the example's node types)

    # The broker delivers every node message twice.
    send = rt.dispatch
    monkeypatch.setattr(rt, "dispatch", lambda batch: [send([d]) or send([d]) for d in batch])
    spane.register_workflow(ORDER)
    first = spane.run("order-fulfilment", {"order_id": "A-1", "total": 20}, timeout=30)
    second = spane.run("order-fulfilment", {"order_id": "A-2", "total": 30}, timeout=30)
    assert first.status == second.status == "completed"
    # Run the charge node of the first order again, twice: the node code runs again...
    for _ in range(2):
        spane.replay(first.id, from_node="charge")
        assert spane.wait(first.id, timeout=30).status == "completed"
    started = [e for e in spane.history(first.id) if e.node_id == "charge" and e.kind == "started"]
    assert len(started) == 3
    # ...but the ledger holds one payment per order, with the same id every time.
    rows = payments(ledger)
    assert [order for order, _ in rows] == ["A-1", "A-2"]
    charged = spane.get_execution(first.id).nodes["charge"].output
    assert charged["payment"]["id"] == rows[0][1]
