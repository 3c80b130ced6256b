"""Lanes: separate queues, and within a worker a high-lane node overtakes queued
default- and low-lane work (it waits for at most what is already in flight)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dramatiq import Worker

import spane
from spane import runtime as runtime_module
from spane.broker import queue_name
from spane.middleware.lanes import HIGH_POLL_MS
from spane.runtime import Runtime
from tests.conftest import embedded_settings
from tests.workers import WorkerPool

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


CHAIN = {
    "id": "chain",
    "nodes": [
        {
            "id": f"s{i}",
            "type": "sleep",
            "config": {"seconds": 0.1},
            **({"after": [f"s{i - 1}"]} if i else {}),
        }
        for i in range(8)
    ],
}


def test_a_high_lane_node_waits_for_one_node_of_a_low_lane_chain_not_the_chain(
    one_thread: Runtime,
) -> None:
    # The thread runs a low-lane chain's successors inline; a high-lane message that
    # arrives meanwhile makes it send the next successor through the broker instead.
    spane.register_workflow(CHAIN)
    spane.register_workflow(WORK)
    low = spane.enqueue_workflow("chain", 1, priority="low")
    time.sleep(0.25)  # the chain is under way, inline in the one thread
    high = spane.enqueue_workflow("work", 99, priority="high")
    for execution_id in (low, high):
        assert spane.wait(execution_id, timeout=30).status == "completed"
    chain_starts = sorted(e.at for e in spane.history(low) if e.kind == "started")
    sent, ran = spane.get_execution(high).created_at, started_at(high)
    meanwhile = [at for at in chain_starts if sent <= at < ran]
    # The chain node in flight when the high-lane message came (and one starting as it
    # was being sent, after its execution was created); not the rest of the chain.
    assert len(meanwhile) <= 2, f"{len(meanwhile)} chain nodes started while it waited"
    assert len([at for at in chain_starts if at > ran]) >= 2, "the chain ended first"


def test_a_worker_given_spane_lanes_takes_only_those_lanes(
    prod: Runtime, workers: WorkerPool
) -> None:
    spane.register_workflow(WORK)
    workers.start(prod.settings, threads=2, SPANE_LANES="high")
    low = spane.enqueue_workflow("work", 1, priority="low")
    high = spane.enqueue_workflow("work", 2, priority="high")
    assert spane.wait(high, timeout=30).status == "completed"
    time.sleep(1.0)  # ample for the same worker to have taken the low-lane node too
    assert spane.get_execution(low).nodes["step"].status == "queued"
    (info,) = spane.workers()
    assert info.lanes == ("high",)
    workers.start(prod.settings, threads=2, SPANE_LANES="default,low")
    assert spane.wait(low, timeout=30).status == "completed"


NAP = {"id": "nap", "nodes": [{"id": "step", "type": "sleep", "config": {"seconds": 3}}]}


def test_lane_load_counts_work_in_flight_and_waiting_per_tenant(
    prod: Runtime, workers: WorkerPool
) -> None:
    spane.register_workflow(NAP)
    workers.start(prod.settings, threads=1, SPANE_LANES="high")
    running = spane.enqueue_workflow("nap", 1, tenant="acme", priority="high")
    for _ in range(2):
        spane.enqueue_workflow("nap", 1, tenant="beta", priority="low")  # no worker serves low
    deadline = time.monotonic() + 30
    while spane.get_execution(running).nodes["step"].status != "running":
        assert time.monotonic() < deadline, "the high-lane node never started"
        time.sleep(0.05)
    acme, beta = prod.store.lane_load()
    assert (acme.lane, acme.tenant, acme.ready, acme.in_flight) == ("high", "acme", 0, 1)
    assert acme.oldest_wait is None
    assert (beta.lane, beta.tenant, beta.ready, beta.in_flight) == ("low", "beta", 2, 0)
    assert beta.oldest_wait is not None and 0 <= beta.oldest_wait < 30
    assert [x.tenant for x in prod.store.lane_load("beta")] == ["beta"]
    served = {lane.lane: (lane.workers, lane.threads) for lane in spane.lanes()}
    assert served == {"high": (1, 1), "default": (0, 0), "low": (0, 0)}


def test_lane_load_on_the_embedded_twin(one_thread: Runtime) -> None:
    spane.register_workflow(NAP)
    first = spane.enqueue_workflow("nap", 1, priority="low")
    for _ in range(2):
        spane.enqueue_workflow("nap", 1, priority="low")
    deadline = time.monotonic() + 30
    while spane.get_execution(first).nodes["step"].status != "running":
        assert time.monotonic() < deadline, "the first node never started"
        time.sleep(0.05)
    (load,) = one_thread.store.lane_load()
    assert (load.lane, load.tenant, load.ready, load.in_flight) == ("low", "default", 2, 1)
    assert load.oldest_wait is not None and load.oldest_wait >= 0


def test_the_high_lane_is_polled_promptly_on_redis(prod: Runtime) -> None:
    # Dramatiq's Redis consumer backs off to the worker timeout between polls of an empty
    # queue: a high-lane message would wait up to that long in an idle lane.
    worker = Worker(prod.broker, worker_threads=1, worker_timeout=1000)
    worker.start()
    try:
        consumers = {queue_name(prod.settings, lane): lane for lane in ("high", "low")}
        expected = {"high": HIGH_POLL_MS, "low": 1000}
        deadline = time.monotonic() + 10
        timeouts: dict[str, int] = {}
        while timeouts != expected and time.monotonic() < deadline:
            time.sleep(0.05)  # each consumer thread is set up as it starts
            timeouts = {
                lane: worker.consumers[q].worker_timeout
                for q, lane in consumers.items()
                if q in worker.consumers
            }
        assert timeouts == expected
    finally:
        worker.stop()
