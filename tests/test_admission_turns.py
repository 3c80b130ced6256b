"""Tenant turns: the weighted plan on its own, and a busy lane on the embedded twin."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import spane
from spane import fairness
from spane import runtime as runtime_module
from spane.runtime import Runtime
from tests import faults
from tests.conftest import embedded_settings

WEIGHTS = {"a": 1.0, "b": 1.0, "c": 2.0}


def test_backlogged_tenants_get_shares_by_weight() -> None:
    available = dict.fromkeys(WEIGHTS, 1000)
    picks, turns, vtime = fairness.plan({}, 0.0, available, WEIGHTS.__getitem__, 400)
    assert picks == {"a": 100, "b": 100, "c": 200}
    # Handed out in batches, the shares come out the same.
    total = dict.fromkeys(WEIGHTS, 0)
    turns, vtime = {}, 0.0
    for _ in range(100):
        batch, turns, vtime = fairness.plan(turns, vtime, available, WEIGHTS.__getitem__, 4)
        for tenant, n in batch.items():
            total[tenant] += n
    assert total == {"a": 100, "b": 100, "c": 200}


def test_a_tenant_back_from_idle_saves_nothing_up() -> None:
    # a was idle while b and c went on to virtual time 50: it starts at 50, not at 0.
    turns = {"a": 0.0, "b": 50.0, "c": 50.0}
    available = {"a": 100, "b": 100, "c": 100}
    picks, _, _ = fairness.plan(turns, 50.0, available, lambda _: 1.0, 30)
    assert picks == {"a": 10, "b": 10, "c": 10}


def test_a_tenant_gets_no_more_than_it_has_waiting() -> None:
    picks, _, _ = fairness.plan({}, 0.0, {"a": 2, "b": 100}, lambda _: 1.0, 10)
    assert picks == {"a": 2, "b": 8}


@pytest.fixture
def busy(tmp_path: Path) -> Iterator[Runtime]:
    import tests.admission_nodes  # noqa: F401

    settings = embedded_settings(tmp_path, fair_queue_depth=4, embedded_threads=4)
    rt = Runtime(settings)
    old = runtime_module.install(rt)
    try:
        yield rt
    finally:
        runtime_module.install(old)
        rt.close()


def held(rt: Runtime, tenant: str) -> int:
    query = "SELECT count(*) FROM spane_admission WHERE kind = 'fair' AND tenant = :t"
    return int(faults.scalar(rt.engine, query, t=tenant))


def test_a_tenant_is_served_while_another_floods_the_lane(busy: Runtime) -> None:
    gid = uuid.uuid4().hex
    node = {"id": "s", "type": "tracked", "config": {"seconds": 0.05, "group": gid}}
    spane.register_workflow({"id": "flood", "nodes": [node]})
    flood = spane.enqueue_many("flood", list(range(200)), tenant="a")
    assert held(busy, "a") >= 150  # the lane's broker queue holds four at most
    steady = [spane.enqueue_workflow("flood", n, tenant="b") for n in range(5)]
    for execution_id in steady:
        assert spane.wait(execution_id, timeout=60).status == "completed"
    assert held(busy, "a") >= 100, "b waited for a's backlog"
    for execution_id in flood:
        assert spane.wait(execution_id, timeout=120).status == "completed"
    assert faults.scalar(busy.engine, "SELECT count(*) FROM spane_admission") == 0


def test_a_release_goes_in_turn_order(busy: Runtime) -> None:
    """Released nodes alternate between tenants (the broker runs them in that order), and
    the release says which tenants still have nodes waiting."""
    gid = uuid.uuid4().hex
    node = {"id": "s", "type": "tracked", "config": {"seconds": 0.01, "group": gid}}
    spane.register_workflow({"id": "turns", "nodes": [node]})
    spane.wait(spane.enqueue_workflow("turns", 0), timeout=60)  # the worker is up
    worker = busy._worker
    assert worker is not None
    worker.pause()
    try:
        ids = {t: spane.enqueue_many("turns", list(range(20)), tenant=t) for t in ("a", "b")}
        assert held(busy, "a") >= 12 and held(busy, "b") >= 12
        result = busy.store.fair.release("default", 10, lambda _: 1.0)
        assert result is not None
        out, left = result
        owner = {e: t for t, group in ids.items() for e in group}
        order = [owner[d.execution_id] for d in out]
        assert len(order) == 10 and sorted(set(order)) == ["a", "b"]
        assert all(x != y for x, y in itertools.pairwise(order)), order
        assert left == {"a", "b"}
    finally:
        worker.resume()
    busy.dispatch(out)
    for group in ids.values():
        for execution_id in group:
            assert spane.wait(execution_id, timeout=120).status == "completed"
