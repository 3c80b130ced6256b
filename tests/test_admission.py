"""Concurrency limits on the embedded twin: never exceeded, released in order, and the
cancel strategies; validation of the new fields; no statement added on the fast path."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

import spane
from spane import runtime as runtime_module
from spane.errors import ConfigurationError, DefinitionError
from spane.runtime import Runtime
from spane.settings import from_env
from tests import faults
from tests.admission_nodes import most_at_once, runs
from tests.conftest import embedded_settings


def group() -> str:
    return uuid.uuid4().hex


def one_node(workflow_id: str, gid: str, seconds: float = 0.1, **fields: Any) -> dict[str, Any]:
    node = {"id": "step", "type": "tracked", "config": {"seconds": seconds, "group": gid}}
    return {"id": workflow_id, "nodes": [{**node, **fields}]}


def wait_all(ids: list[str], status: str = "completed") -> None:
    for execution_id in ids:
        assert spane.wait(execution_id, timeout=60).status == status


def test_a_node_limit_is_never_exceeded(rt: Runtime) -> None:
    gid = group()
    spane.register_workflow(one_node("capped", gid, max_concurrency=2))
    wait_all([spane.enqueue_workflow("capped", i) for i in range(12)])
    # Eight threads, twelve ready nodes: only the limit kept them to two at once.
    assert most_at_once(runs(gid)) == 2
    assert faults.scalar(rt.engine, "SELECT count(*) FROM spane_admission") == 0


def test_a_node_type_limit_spans_workflows(rt: Runtime) -> None:
    gid = group()
    for name in ("left", "right"):
        spane.register_workflow(
            {
                "id": name,
                "nodes": [
                    {"id": "s", "type": "tracked_capped", "config": {"seconds": 0.1, "group": gid}}
                ],
            }
        )
    ids = [spane.enqueue_workflow(name, i) for i in range(5) for name in ("left", "right")]
    wait_all(ids)
    assert most_at_once(runs(gid)) == 2  # tracked_capped: max_concurrency=2


def test_a_key_limit_runs_one_per_key_in_arrival_order(rt: Runtime) -> None:
    gid = group()
    limit = {"key": "input.customer", "max": 1}
    spane.register_workflow(one_node("per-key", gid, concurrency=limit))
    ids = [
        spane.enqueue_workflow("per-key", {"customer": customer, "n": n})
        for n in range(6)
        for customer in ("c1", "c2")
    ]
    wait_all(ids)
    done = runs(gid)
    for customer in ("c1", "c2"):
        mine = sorted((r for r in done if r[3]["customer"] == customer), key=lambda r: r[0])
        assert most_at_once(mine) == 1
        assert [r[3]["n"] for r in mine] == list(range(6)), "not in arrival order"
    assert most_at_once(done) == 2  # the two keys ran side by side


def test_a_waiter_on_a_busy_key_does_not_hold_up_other_keys(rt: Runtime) -> None:
    gid = group()
    limit = {"key": "input.customer", "max": 1}
    spane.register_workflow(
        one_node("lines", gid, seconds=0.2, max_concurrency=2, concurrency=limit)
    )
    ids = [spane.enqueue_workflow("lines", {"customer": c}) for c in ("c1", "c1", "c1", "c2")]
    wait_all(ids)
    starts = {r[2]: r[0] for r in runs(gid)}
    # c2 came last but took the node's free slot while c1's second and third waited.
    assert starts[ids[3]] < starts[ids[1]] < starts[ids[2]]


def test_cancel_newest_cancels_the_arriving_execution(rt: Runtime) -> None:
    gid = group()
    limit = {"key": "input.customer", "max": 1, "strategy": "cancel_newest"}
    spane.register_workflow(one_node("newest", gid, seconds=0.5, concurrency=limit))
    first = spane.enqueue_workflow("newest", {"customer": "c1"})
    second = spane.enqueue_workflow("newest", {"customer": "c1"})
    other = spane.enqueue_workflow("newest", {"customer": "c2"})
    late = spane.wait(second, timeout=30)
    assert late.status == "cancelled"
    assert "at its limit of 1 (strategy cancel_newest)" in (late.error or "")
    wait_all([first, other])


def test_cancel_oldest_cancels_the_execution_in_the_way(rt: Runtime) -> None:
    gid = group()
    limit = {"key": "input.customer", "max": 1, "strategy": "cancel_oldest"}
    spane.register_workflow(
        {
            "id": "oldest",
            "nodes": [
                {
                    "id": "step",
                    "type": "tracked",
                    "config": {"seconds": 0.5, "group": gid},
                    "concurrency": limit,
                },
                {"id": "after", "type": "echo", "after": ["step"]},
            ],
        }
    )
    first = spane.enqueue_workflow("oldest", {"customer": "c1", "n": 1})
    faults.wait_until(
        lambda: spane.get_execution(first).nodes["step"].status == "running", 10, "it to run"
    )
    second = spane.enqueue_workflow("oldest", {"customer": "c1", "n": 2})
    old = spane.wait(first, timeout=30)
    assert old.status == "cancelled"
    assert "strategy cancel_oldest" in (old.error or "")
    assert spane.wait(second, timeout=30).status == "completed"
    # The cancelled node's code ran to its end before the newer one started.
    assert most_at_once(runs(gid)) == 1


def test_max_parallel_bounds_a_fan_out(rt: Runtime) -> None:
    gid = group()
    branches = [
        {"id": f"b{i}", "type": "tracked", "after": ["start"], "config": {"group": gid}}
        for i in range(10)
    ]
    spane.register_workflow(
        {
            "id": "fan",
            "max_parallel": 3,
            "nodes": [{"id": "start", "type": "echo"}, *branches],
        }
    )
    wait_all([spane.enqueue_workflow("fan", 1)])
    assert len(runs(gid)) == 10
    assert most_at_once(runs(gid)) == 3


def test_a_failed_execution_gives_its_slot_to_the_next(rt: Runtime) -> None:
    spane.register_workflow(
        {
            "id": "fails",
            "nodes": [
                {
                    "id": "f",
                    "type": "fail",
                    "max_concurrency": 1,
                    "retry": {"max_attempts": 1},
                }
            ],
        }
    )
    ids = [spane.enqueue_workflow("fails", i) for i in range(4)]
    wait_all(ids, "failed")  # each one waited for the slot of the one that failed before


@pytest.fixture
def capped_tenants(tmp_path: Path) -> Iterator[Runtime]:
    import tests.admission_nodes  # noqa: F401

    rt = Runtime(embedded_settings(tmp_path, tenant_max_in_flight=(("acme", 1), ("*", 3))))
    old = runtime_module.install(rt)
    try:
        yield rt
    finally:
        runtime_module.install(old)
        rt.close()


def test_tenant_in_flight_caps(capped_tenants: Runtime) -> None:
    gid = group()
    spane.register_workflow(one_node("tenants", gid))
    ids = [
        spane.enqueue_workflow("tenants", {"tenant": tenant}, tenant=tenant)
        for _ in range(6)
        for tenant in ("acme", "beta")
    ]
    wait_all(ids)
    done = runs(gid)
    assert most_at_once([r for r in done if r[3]["tenant"] == "acme"]) == 1
    # Beta's cap is its own (3), not acme's: more than one at once, never over three.
    # How close it comes to three depends on how busy the machine is.
    assert 2 <= most_at_once([r for r in done if r[3]["tenant"] == "beta"]) <= 3


BAD_FIELDS = [
    ({"max_concurrency": 0}, "nodes[0].max_concurrency", ">= 1"),
    ({"concurrency": {"key": "input.a", "max": 0}}, "nodes[0].concurrency.max", ">= 1"),
    (
        {"concurrency": {"key": "input.a", "strategy": "drop"}},
        "nodes[0].concurrency.strategy",
        "queue",
    ),
    ({"concurrency": {"key": "input.[", "max": 1}}, "nodes[0].concurrency", "JMESPath"),
    ({"concurrency": {"max": 1}}, "nodes[0].concurrency.key", "missing"),
    ({"concurrency": {"key": "customer_id"}}, "nodes[0].concurrency", "input.customer_id"),
]


@pytest.mark.parametrize(("fields", "path", "words"), BAD_FIELDS)
def test_bad_limits_are_refused_with_their_path(
    rt: Runtime, fields: dict[str, Any], path: str, words: str
) -> None:
    with pytest.raises(DefinitionError) as caught:
        spane.register_workflow(one_node("bad", "g", **fields))
    found = {p.path: p.message for p in caught.value.problems}
    assert path in found, found
    assert words in found[path]


def test_bad_max_parallel_is_refused(rt: Runtime) -> None:
    definition = {**one_node("bad", "g"), "max_parallel": 0}
    with pytest.raises(DefinitionError) as caught:
        spane.register_workflow(definition)
    assert [p.path for p in caught.value.problems] == ["max_parallel"]


def test_a_bad_node_type_limit_is_refused(rt: Runtime) -> None:
    with pytest.raises(spane.SpaneError, match="max_concurrency must be a whole number"):
        spane.node_type("never", max_concurrency=0)(lambda ctx: None)


def _statements(rt: Runtime, workflow_id: str, count: int) -> list[str]:
    """SQL issued to start ``count`` executions and by the worker threads running them
    (not the background threads of the sweeper and heartbeat, nor ``spane.wait``)."""
    seen: list[str] = []
    main = threading.current_thread()
    starting = True

    def record(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        thread = threading.current_thread()
        if not thread.name.startswith("spane-") and (starting or thread is not main):
            seen.append(statement)

    event.listen(rt.engine, "before_cursor_execute", record)
    try:
        ids = [spane.enqueue_workflow(workflow_id, i) for i in range(count)]
        starting = False
        wait_all(ids)
    finally:
        event.remove(rt.engine, "before_cursor_execute", record)
    return seen


def test_the_fast_path_adds_no_statement(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    spane.register_workflow(
        {
            "id": "plain",
            "nodes": [
                {"id": "a", "type": "echo"},
                {"id": "b", "type": "echo", "after": ["a"]},
                {"id": "c", "type": "echo", "after": ["a"]},
            ],
        }
    )
    wait_all([spane.enqueue_workflow("plain", 0)])  # caches warm
    # The worker's start sent the first entry node again: let that copy be dropped.
    time.sleep(0.5)
    with_admission = _statements(rt, "plain", 5)
    monkeypatch.setattr(rt.admission, "admit", list)
    without = _statements(rt, "plain", 5)
    assert not [s for s in with_admission if "spane_admission" in s]
    extra = Counter(with_admission)
    extra.subtract(Counter(without))
    assert not +extra and not -extra, {s[:80]: n for s, n in extra.items() if n}


def test_tenant_settings_are_read_and_checked() -> None:
    env = {"SPANE_TENANT_MAX_IN_FLIGHT": "acme=50,*=20", "SPANE_TENANT_WEIGHTS": "acme=2"}
    settings = from_env(env)
    assert settings.tenant_max_in_flight == (("acme", 50), ("*", 20))
    assert settings.tenant_weights == (("acme", 2.0),)
    assert from_env({"SPANE_TENANT_MAX_IN_FLIGHT": "7"}).tenant_max_in_flight == (("*", 7),)
    with pytest.raises(ConfigurationError, match="tenant=number pairs"):
        from_env({"SPANE_TENANT_WEIGHTS": "=2"})
    with pytest.raises(ConfigurationError, match="SPANE_TENANT_MAX_IN_FLIGHT must be positive"):
        from_env({"SPANE_TENANT_MAX_IN_FLIGHT": "acme=0"})


def test_lane_load_tells_nodes_waiting_on_a_limit_from_ready_ones(rt: Runtime) -> None:
    gid = group()
    limit = {"key": "input.customer", "max": 1}
    spane.register_workflow(one_node("visible", gid, seconds=1.0, concurrency=limit))
    ids = [spane.enqueue_workflow("visible", {"customer": "c1", "n": n}) for n in range(3)]
    deadline = time.monotonic() + 30
    while spane.get_execution(ids[0]).nodes["step"].status != "running":
        assert time.monotonic() < deadline, "the first node never started"
        time.sleep(0.02)
    (load,) = rt.store.lane_load()
    # One runs, two wait for its slot in the database: none of them is ready to take.
    assert (load.ready, load.in_flight, load.limited) == (0, 1, 2)
    assert load.oldest_wait is not None and load.oldest_wait >= 0
    wait_all(ids)
    assert rt.store.lane_load() == []
