"""Concurrency limits and tenant turns on real workers (Redis + PostgreSQL).

Node code records when it ran on a Redis list; the most attempts whose code overlapped
is what the limits promise to bound, whatever process ran them.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest

import spane
from spane.runtime import Runtime
from tests import faults
from tests.admission_nodes import most_at_once, runs
from tests.workers import WorkerPool

pytestmark = pytest.mark.integration


def tracked(workflow_id: str, record: str, seconds: float, **fields: Any) -> dict[str, Any]:
    node = {"id": "step", "type": "tracked", "config": {"seconds": seconds, "record": record}}
    return {"id": workflow_id, "nodes": [{**node, **fields}]}


def wait_all(ids: list[str], timeout: float = 120) -> None:
    for execution_id in ids:
        assert spane.wait(execution_id, timeout=timeout).status == "completed"


def test_limits_hold_across_workers(prod: Runtime, workers: WorkerPool, namespace: str) -> None:
    record = f"{namespace}:runs"
    limit = {"key": "input.customer", "max": 1}
    spane.register_workflow(tracked("shared", record, 0.2, max_concurrency=3, concurrency=limit))
    for _ in range(2):
        workers.start(prod.settings, threads=4, modules=("tests.nodes", "tests.admission_nodes"))
    customers = ("c1", "c2", "c3", "c4")
    ids = [
        spane.enqueue_workflow("shared", {"customer": c, "n": n})
        for n in range(5)
        for c in customers
    ]
    wait_all(ids)
    done = runs(record=record)
    assert len(done) == len(ids)
    assert 2 <= most_at_once(done) <= 3
    for customer in customers:
        mine = sorted((r for r in done if r[3]["customer"] == customer), key=lambda r: r[0])
        assert most_at_once(mine) == 1
        assert [r[3]["n"] for r in mine] == list(range(5)), "not in arrival order"


def test_a_killed_workers_slot_comes_back(
    prod: Runtime, workers: WorkerPool, namespace: str
) -> None:
    """SIGKILL the worker running the only slot's node: its lease runs out, the node runs
    again, and the waiters behind it are admitted one at a time."""
    record = f"{namespace}:runs"
    spane.register_workflow(tracked("single", record, 1.0, max_concurrency=1))
    fast = prod.settings.with_(lease_seconds=2.0, sweep_interval=0.2)
    modules = ("tests.nodes", "tests.admission_nodes")
    doomed = workers.start(fast, threads=2, modules=modules)
    first = spane.enqueue_workflow("single", 0)
    faults.wait_until(
        lambda: faults.node_count(prod.engine, "running") == 1, 30, "the first node to run"
    )
    rest = [spane.enqueue_workflow("single", i) for i in range(1, 4)]
    held = "SELECT count(*) FROM spane_admission WHERE state = 'held'"
    assert faults.scalar(prod.engine, held) == 3
    workers.signal(doomed, signal.SIGKILL)
    doomed.proc.wait(timeout=10)
    workers.start(fast, threads=4, modules=modules)
    wait_all([first, *rest])
    assert faults.event_count(prod.engine, "lease_expired") == 1
    done = runs(record=record)
    assert sorted(r[3] for r in done) == [0, 1, 2, 3]  # the killed attempt never recorded
    assert most_at_once(done) == 1


@pytest.fixture
def turns(prod: Runtime) -> Iterator[Runtime]:
    """A client whose lanes count as busy from 8 waiting messages; weights a=1, b=1, c=2."""
    settings = prod.settings.with_(
        fair_queue_depth=8, tenant_weights=(("a", 1.0), ("b", 1.0), ("c", 2.0))
    )
    with faults.client_runtime(settings) as rt:
        yield rt


FAIR_ENV = {"SPANE_FAIR_QUEUE_DEPTH": "8", "SPANE_TENANT_WEIGHTS": "a=1,b=1,c=2"}


def fair_workers(rt: Runtime, workers: WorkerPool) -> None:
    workers.start(
        rt.settings, threads=4, modules=("tests.nodes", "tests.admission_nodes"), **FAIR_ENV
    )


def held(rt: Runtime, tenant: str) -> int:
    query = "SELECT count(*) FROM spane_admission WHERE kind = 'fair' AND tenant = :t"
    return int(faults.scalar(rt.engine, query, t=tenant))


def test_a_tenant_is_served_while_another_has_a_backlog(
    turns: Runtime, workers: WorkerPool, namespace: str
) -> None:
    record = f"{namespace}:runs"
    spane.register_workflow(tracked("flood", record, 0.05))
    flood = spane.enqueue_many("flood", [{"t": "a", "n": n} for n in range(400)], tenant="a")
    # Eight went to the broker; the rest wait in the database for their turn.
    assert held(turns, "a") == 392
    fair_workers(turns, workers)
    steady = [spane.enqueue_workflow("flood", {"t": "b", "n": n}, tenant="b") for n in range(10)]
    wait_all(steady)
    assert held(turns, "a") >= 150, "b's work waited for a's backlog"
    wait_all(flood, timeout=300)
    assert held(turns, "a") == 0


def test_busy_tenants_share_a_lane_by_weight(
    turns: Runtime, workers: WorkerPool, namespace: str
) -> None:
    record = f"{namespace}:runs"
    spane.register_workflow(tracked("shares", record, 0.01))
    ids = [
        execution_id
        for tenant in ("a", "b", "c")
        for execution_id in spane.enqueue_many(
            "shares", [{"t": tenant, "n": n} for n in range(150)], tenant=tenant
        )
    ]
    fair_workers(turns, workers)
    wait_all(ids, timeout=300)
    order = [r[3]["t"] for r in sorted(runs(record=record), key=lambda r: r[0])]
    # The first eight went straight to the broker (all a's); while every tenant still
    # has work waiting (c, at twice the others' pace, runs out after 300), shares follow
    # the weights 1:1:2.
    window = order[8:208]
    expected = {"a": 0.25, "b": 0.25, "c": 0.5}
    for tenant, share in expected.items():
        got = window.count(tenant) / len(window)
        assert abs(got - share) <= 0.2 * share, (tenant, got, share)
