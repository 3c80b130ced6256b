"""Correctness defects found by trying to break the engine: children of a failed
execution, untrusted messages, and non-finite durations."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import dramatiq
import msgspec
import pytest
from structlog.testing import capture_logs

import spane
from spane import validation
from spane.broker import queue_name
from spane.durations import parse_duration
from spane.payloads import LEGACY_CLAIM as CLAIM
from spane.runtime import COORDINATOR, Runtime
from tests import faults
from tests.history import wait_for
from tests.workers import WorkerPool

SLEEPER = {"id": "sleeper", "nodes": [{"id": "nap", "type": "delay", "config": {"duration": "1h"}}]}
CALLER = {
    "id": "caller",
    "nodes": [{"id": "call", "type": "subworkflow", "config": {"workflow": "sleeper"}}],
}


def _family(tmp_path: Path) -> Path:
    trigger = tmp_path / "fail-now"
    spane.register_workflow(SLEEPER)
    spane.register_workflow(
        {
            "id": "doomed-parent",
            "nodes": [
                {"id": "call", "type": "subworkflow", "config": {"workflow": "sleeper"}},
                {"id": "boom", "type": "fail_once_file", "config": {"path": str(trigger)}},
            ],
        }
    )
    return trigger


def _only_child(parent_id: str) -> str | None:
    children = spane.get_execution(parent_id).children
    return children[0] if children else None


def test_a_failed_execution_cancels_its_running_children(backend: Runtime, tmp_path: Path) -> None:
    trigger = _family(tmp_path)
    parent_id = spane.enqueue_workflow("doomed-parent", None)
    child_id = wait_for(lambda: _only_child(parent_id), "the child execution")
    assert spane.get_execution(child_id).status == "running"
    trigger.touch()
    assert spane.wait(parent_id, timeout=60).status == "failed"
    child = spane.get_execution(child_id)
    assert child.status == "cancelled"
    assert child.nodes["nap"].status == "cancelled"
    assert child.error == f"parent execution {parent_id} failed"


def test_a_cancelled_execution_cancels_its_children_at_once(rt: Runtime, tmp_path: Path) -> None:
    _family(tmp_path)
    parent_id = spane.enqueue_workflow("doomed-parent", None)
    child_id = wait_for(lambda: _only_child(parent_id), "the child execution")
    spane.cancel(parent_id)
    assert spane.get_execution(child_id).status == "cancelled"


# -- non-finite durations --------------------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "9" * 400 + "s"])
def test_non_finite_durations_are_refused_at_validation(value: Any) -> None:
    import spane.builtins

    with pytest.raises(ValueError, match="finite"):
        parse_duration(value)
    definition = {
        "id": "nan",
        "nodes": [
            {"id": "a", "type": "noop", "timeout": value, "retry": {"delay": value}},
            {"id": "b", "type": "delay", "config": {"duration": value}, "after": ["a"]},
        ],
    }
    with pytest.raises(spane.DefinitionError) as caught:
        validation.load_definition(definition)
    paths = {p.path for p in caught.value.problems}
    assert {"nodes[0].timeout", "nodes[0].retry.delay"} <= paths
    assert any(p.startswith("nodes[1].config") for p in paths)


def test_yaml_nan_durations_never_reach_the_store(rt: Runtime) -> None:
    text = "id: nan-yaml\nnodes:\n  - {id: a, type: echo, timeout: .nan, retry: {delay: .inf}}\n"
    with pytest.raises(spane.DefinitionError, match="finite"):
        spane.register_workflow(text)
    assert rt.store.latest_version("nan-yaml") is None


# -- untrusted messages ----------------------------------------------------------------


def test_claim_check_never_takes_the_tenant_from_the_message(rt: Runtime) -> None:
    secret = ["top secret of acme " * 10_000]
    ref = rt.blobs.put("acme", msgspec.json.encode(secret))
    received: list[Any] = []
    lane = queue_name(rt.settings, "default")
    dramatiq.Actor(
        received.append,
        broker=rt.broker,
        actor_name="cc_forged",
        queue_name=lane,
        priority=0,
        options={"max_retries": 0},
    )
    forged: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=lane,
        actor_name="cc_forged",
        args=(),
        kwargs={"value": {CLAIM: ref}},
        options={"spane_tenant": "acme"},
    )
    with capture_logs() as logs:
        rt.broker.enqueue(forged)
        rt.ensure_worker()
        rt.broker.join(lane, timeout=10_000, fail_fast=False)  # type: ignore[attr-defined]
        letters = wait_for(spane.dead_letters, "a dead letter for the forged message")
    assert received == []
    assert "top secret" not in repr(logs) and "top secret" not in repr(letters)


def test_a_forged_child_ended_does_not_fail_a_parent_whose_child_runs(rt: Runtime) -> None:
    spane.register_workflow(SLEEPER)
    spane.register_workflow(CALLER)
    parent_id = spane.enqueue_workflow("caller", None)
    child_id = wait_for(lambda: _only_child(parent_id), "the child execution")
    wait_for(lambda: spane.get_execution(parent_id).nodes["call"].status == "waiting", "park")
    rt.broker.enqueue(
        dramatiq.Message(
            queue_name=queue_name(rt.settings, "high"),
            actor_name=COORDINATOR,
            args=(),
            kwargs={
                "execution_id": parent_id,
                "event": "child_ended",
                "node_id": "call",
                "child_id": child_id,
            },
            options={},
        )
    )
    # Joined by hand: the child's one-hour timer waits on the lane's delay queue.
    high = rt.broker.queues[queue_name(rt.settings, "high")]  # type: ignore[attr-defined]
    wait_for(lambda: high.unfinished_tasks == 0, "the forged message to be handled")
    parent = spane.get_execution(parent_id)
    assert parent.status == "running" and parent.nodes["call"].status == "waiting"
    assert spane.get_execution(child_id).status == "running"


def _forge(runtime: Runtime, queue: str, actor: str, kwargs: dict[str, Any]) -> None:
    redis_id = str(uuid.uuid4())
    message = {
        "queue_name": queue,
        "actor_name": actor,
        "args": [],
        "kwargs": kwargs,
        "options": {"redis_message_id": redis_id},
        "message_id": str(uuid.uuid4()),
        "message_timestamp": 0,
    }
    data = msgspec.json.encode(message)
    faults.push_raw(runtime.settings.broker_url, runtime.settings.namespace, queue, data, redis_id)


def test_forged_node_messages_are_dead_lettered_and_change_no_execution(
    prod: Runtime, workers: WorkerPool
) -> None:
    """On Redis and PostgreSQL: a message to an actor no worker has, naming another
    execution's queued node, one with malformed arguments, and a forged wake-up."""
    spane.register_workflow({"id": "parked-low", "nodes": [{"id": "a", "type": "echo"}]})
    # The worker serves no low lane, so this node stays queued while messages are forged.
    victim = spane.enqueue_workflow("parked-low", 1, priority="low")
    ns = prod.settings.namespace
    workers.start(prod.settings, queues=(f"{ns}.default", f"{ns}.high"))
    default = f"{ns}.default"
    ids = {"execution_id": victim, "node_id": "a", "attempt": 1}
    for _ in range(2):  # sent again (new message ids): still one dead letter
        _forge(prod, default, "spane.node.no_such_type.default", ids)
    _forge(prod, default, "spane.node.no_such_type.default", {"execution_id": victim})
    _forge(prod, default, "spane.node.echo.default", {"attempt": "not a number"})
    letters = wait_for(
        lambda: len(spane.dead_letters()) >= 2 and spane.dead_letters(),
        "dead letters of the forged messages",
        timeout=60,
    )
    assert all(d.kind == "message" for d in letters)
    assert any("SPANE_MODULES" in d.reason for d in letters)
    time.sleep(1)  # the last message (a known actor, bad arguments) is handled by now
    assert len(spane.dead_letters()) == 2
    victim_state = spane.get_execution(victim)
    assert victim_state.status == "running"
    assert victim_state.nodes["a"].status == "queued"

    # A forged wake-up of a parent whose child still runs.
    spane.register_workflow(SLEEPER)
    spane.register_workflow(CALLER)
    parent_id = spane.enqueue_workflow("caller", None)
    child_id = wait_for(lambda: _only_child(parent_id), "the child execution", timeout=60)
    wait_for(lambda: spane.get_execution(parent_id).nodes["call"].status == "waiting", "park")
    wake = {"execution_id": parent_id, "event": "child_ended", "node_id": "call"}
    _forge(prod, f"{ns}.high", COORDINATOR, {**wake, "child_id": child_id})
    wait_for(
        lambda: faults.stored_messages(prod.settings.broker_url, ns, f"{ns}.high") == 0,
        "the forged wake-up to be handled",
    )
    parent = spane.get_execution(parent_id)
    assert parent.status == "running" and parent.nodes["call"].status == "waiting"
