"""Lanes: separate queues, and within a worker a high-lane node overtakes queued
default- and low-lane work (it waits for at most what is already in flight)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import spane
from spane import runtime as runtime_module
from spane.broker import queue_name
from spane.runtime import Runtime
from tests.conftest import embedded_settings

WORK = {"id": "work", "nodes": [{"id": "step", "type": "sleep", "config": {"seconds": 0.1}}]}


@pytest.fixture
def one_thread(tmp_path: Path) -> Iterator[Runtime]:
    import tests.nodes  # noqa: F401

    rt = Runtime(embedded_settings(tmp_path, embedded_threads=1))
    old = runtime_module.install(rt)
    try:
        yield rt
    finally:
        runtime_module.install(old)
        rt.close()


def started_at(execution_id: str) -> float:
    (event,) = [e for e in spane.history(execution_id) if e.kind == "started"]
    return event.at


def test_a_high_lane_node_overtakes_a_low_lane_flood(one_thread: Runtime) -> None:
    spane.register_workflow(WORK)
    low = [spane.enqueue_workflow("work", i, priority="low") for i in range(10)]
    time.sleep(0.15)  # the flood is under way: one node in flight, the rest queued
    high = spane.enqueue_workflow("work", 99, priority="high")
    for execution_id in [*low, high]:
        assert spane.wait(execution_id, timeout=30).status == "completed"
    overtaken = [e for e in low if started_at(e) > started_at(high)]
    ahead = len(low) - len(overtaken)
    # Ahead of it: what had started before it was sent (at most two 0.1 s nodes in
    # 0.15 s) and the one node in flight when it arrived.
    assert ahead <= 3, f"{ahead} low-lane nodes started before the high-lane one"
    assert len(overtaken) >= 7


def test_each_lane_is_its_own_queue(rt: Runtime) -> None:
    spane.register_workflow(WORK)
    rt.ensure_worker()  # its start re-sends queued nodes; keep that out of the count
    messages = []
    send = rt.broker.enqueue
    rt.broker.enqueue = lambda m, **kw: messages.append(m) or send(m, **kw)  # type: ignore[method-assign]
    for lane in ("high", "default", "low"):
        spane.wait(spane.enqueue_workflow("work", 1, priority=lane), timeout=30)
    queues = [m.queue_name for m in messages if m.actor_name.startswith("spane.node.")]
    assert queues == [queue_name(rt.settings, lane) for lane in ("high", "default", "low")]
    actors = [m.actor_name for m in messages if m.actor_name.startswith("spane.node.")]
    assert actors == ["spane.node.sleep.high", "spane.node.sleep.default", "spane.node.sleep.low"]
