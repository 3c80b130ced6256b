"""The Python API (SPEC §4) against the embedded engine: input checks, controls, errors."""

from __future__ import annotations

import time
from typing import Any

import pytest

import spane
from spane.runtime import Runtime

TIMEOUT = 30

ORDERS = {
    "id": "orders",
    "input_schema": {
        "type": "object",
        "required": ["order_id"],
        "properties": {"order_id": {"type": "integer"}, "note": {"type": "string"}},
    },
    "nodes": [{"id": "a", "type": "echo"}],
}
HOLD = {
    "id": "hold",
    "nodes": [
        {"id": "first", "type": "echo"},
        {"id": "wait", "type": "delay", "after": ["first"], "config": {"duration": "1m"}},
        {"id": "then", "type": "echo", "after": ["wait"]},
        {"id": "last", "type": "echo", "after": ["then"]},
    ],
}
QUICK = {"id": "quick", "nodes": [{"id": "a", "type": "echo"}]}
BROKEN = {"id": "broken", "nodes": [{"id": "a", "type": "fail", "config": {"retryable": False}}]}


def wait_for_node(execution_id: str, node_id: str, status: str) -> spane.Execution:
    """Poll until a node reaches ``status`` (fails the test after a few seconds)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        execution = spane.get_execution(execution_id)
        if execution.nodes[node_id].status == status:
            return execution
        time.sleep(0.01)
    pytest.fail(f"node {node_id} never became {status}")


# -- input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({}, "order_id"),
        ({"order_id": "seven"}, "order_id"),
        ({"order_id": 7, "note": 3}, "note"),
    ],
    ids=["missing", "wrong-type", "other-field"],
)
def test_input_is_validated_against_the_schema_and_nothing_is_written(
    rt: Runtime, value: Any, field: str
) -> None:
    spane.register_workflow(ORDERS)
    with pytest.raises(spane.InputError) as info:
        spane.enqueue_workflow("orders", value)
    assert isinstance(info.value, spane.SpaneError)
    assert f"input.{field}" in str(info.value)
    assert spane.list_executions() == []


def test_valid_input_is_accepted(rt: Runtime) -> None:
    spane.register_workflow(ORDERS)
    done = spane.wait(spane.enqueue_workflow("orders", {"order_id": 7}), timeout=TIMEOUT)
    assert done.status == "completed"
    assert done.input == {"order_id": 7}


def test_run_validates_input_too(rt: Runtime) -> None:
    with pytest.raises(spane.InputError, match="order_id"):
        spane.run(ORDERS, {"order_id": None}, timeout=TIMEOUT)
    assert spane.list_executions() == []


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        float("inf"),
        {"x": float("nan")},
        b"bytes",
        {"x": [b"bytes"]},
        {1, 2},
        "a\x00b",
        {"key": "a\x00b"},
        {1: "non-string key"},
        object(),
    ],
    ids=[
        "nan",
        "inf",
        "nested-nan",
        "bytes",
        "nested-bytes",
        "set",
        "nul",
        "nested-nul",
        "int-key",
        "object",
    ],
)
def test_non_json_input_is_refused(rt: Runtime, value: Any) -> None:
    spane.register_workflow(QUICK)
    with pytest.raises(spane.InputError):
        spane.enqueue_workflow("quick", value)
    assert spane.list_executions() == []


def test_unknown_workflow(rt: Runtime) -> None:
    with pytest.raises(spane.UnknownWorkflow, match="nope"):
        spane.enqueue_workflow("nope", None)
    assert spane.list_executions() == []


def test_unknown_workflow_version(rt: Runtime) -> None:
    spane.register_workflow(QUICK)
    with pytest.raises(spane.UnknownWorkflow):
        spane.enqueue_workflow("quick", None, version=9)


@pytest.mark.parametrize("priority", ["urgent", "", "HIGH"])
def test_bad_priority_is_refused(rt: Runtime, priority: str) -> None:
    spane.register_workflow(QUICK)
    with pytest.raises(spane.InputError, match="priority"):
        spane.enqueue_workflow("quick", None, priority=priority)
    assert spane.list_executions() == []


def test_good_priority_is_accepted(rt: Runtime) -> None:
    spane.register_workflow(QUICK)
    done = spane.wait(spane.enqueue_workflow("quick", 1, priority="high"), timeout=TIMEOUT)
    assert done.status == "completed"


# -- waiting and reading -----------------------------------------------------------------


def test_wait_times_out_and_the_execution_goes_on(rt: Runtime) -> None:
    spane.register_workflow(HOLD)
    execution_id = spane.enqueue_workflow("hold", None)
    started = time.monotonic()
    with pytest.raises(spane.WaitTimeout, match=execution_id):
        spane.wait(execution_id, timeout=0.2)
    assert time.monotonic() - started >= 0.2
    assert spane.get_execution(execution_id).status == "running"
    spane.cancel(execution_id)


def test_run_with_a_timeout_raises_wait_timeout(rt: Runtime) -> None:
    with pytest.raises(spane.WaitTimeout):
        spane.run(HOLD, None, timeout=0.2)
    (summary,) = spane.list_executions()
    spane.cancel(summary.id)


def test_get_execution_of_an_unknown_id(rt: Runtime) -> None:
    with pytest.raises(spane.UnknownExecution, match="no-such-id"):
        spane.get_execution("no-such-id")
    with pytest.raises(spane.UnknownExecution):
        spane.wait("no-such-id", timeout=1)
    with pytest.raises(spane.UnknownExecution):
        spane.cancel("no-such-id")


def test_list_executions_filters(rt: Runtime) -> None:
    spane.register_workflow(QUICK)
    spane.register_workflow(BROKEN)
    ok_acme = spane.wait(spane.enqueue_workflow("quick", 1, tenant="acme"), timeout=TIMEOUT)
    ok_other = spane.wait(spane.enqueue_workflow("quick", 2, tenant="other"), timeout=TIMEOUT)
    bad_acme = spane.wait(spane.enqueue_workflow("broken", 3, tenant="acme"), timeout=TIMEOUT)
    assert bad_acme.status == "failed"

    def ids(**filters: Any) -> set[str]:
        return {summary.id for summary in spane.list_executions(**filters)}

    assert ids() == {ok_acme.id, ok_other.id, bad_acme.id}
    assert ids(status="failed") == {bad_acme.id}
    assert ids(status="completed") == {ok_acme.id, ok_other.id}
    assert ids(workflow_id="quick") == {ok_acme.id, ok_other.id}
    assert ids(workflow_id="broken") == {bad_acme.id}
    assert ids(tenant="acme") == {ok_acme.id, bad_acme.id}
    assert ids(tenant="acme", status="completed") == {ok_acme.id}
    assert ids(tenant="nobody") == set()
    newest_first = [summary.id for summary in spane.list_executions()]
    assert newest_first == [bad_acme.id, ok_other.id, ok_acme.id]
    assert len(spane.list_executions(limit=1)) == 1
    (summary,) = spane.list_executions(tenant="other")
    assert (summary.workflow_id, summary.tenant, summary.status) == ("quick", "other", "completed")


# -- cancel --------------------------------------------------------------------------


def test_cancel_a_running_execution(rt: Runtime) -> None:
    spane.register_workflow(HOLD)
    execution_id = spane.enqueue_workflow("hold", None)
    wait_for_node(execution_id, "wait", "waiting")
    spane.cancel(execution_id)
    cancelled = spane.wait(execution_id, timeout=TIMEOUT)
    assert cancelled.status == "cancelled"
    assert cancelled.finished_at is not None
    assert cancelled.nodes["first"].status == "completed"
    for name in ("wait", "then", "last"):
        assert cancelled.nodes[name].status == "cancelled", name
    assert spane.list_executions(status="cancelled")[0].id == execution_id


def test_cancel_a_finished_execution_is_an_invalid_transition(rt: Runtime) -> None:
    done = spane.run(QUICK, 1, timeout=TIMEOUT)
    with pytest.raises(spane.InvalidTransition, match="completed"):
        spane.cancel(done.id)
    assert spane.get_execution(done.id).status == "completed"


def test_cancel_twice_is_an_invalid_transition(rt: Runtime) -> None:
    spane.register_workflow(HOLD)
    execution_id = spane.enqueue_workflow("hold", None)
    spane.cancel(execution_id)
    with pytest.raises(spane.InvalidTransition, match="cancelled"):
        spane.cancel(execution_id)


# -- idempotency -------------------------------------------------------------------------


def test_idempotency_key_returns_the_same_execution_and_starts_nothing(rt: Runtime) -> None:
    spane.register_workflow(QUICK)
    first = spane.enqueue_workflow("quick", 1, idempotency_key="order-1")
    again = spane.enqueue_workflow("quick", 2, idempotency_key="order-1")
    assert again == first
    done = spane.wait(first, timeout=TIMEOUT)
    assert done.input == 1
    assert done.nodes["a"].attempts == 1
    assert [summary.id for summary in spane.list_executions()] == [first]
    after_completion = spane.enqueue_workflow("quick", 3, idempotency_key="order-1")
    assert after_completion == first
    time.sleep(0.1)
    assert spane.get_execution(first).nodes["a"].attempts == 1
    assert len(spane.list_executions()) == 1


def test_idempotency_keys_are_per_tenant(rt: Runtime) -> None:
    spane.register_workflow(QUICK)
    first = spane.enqueue_workflow("quick", 1, idempotency_key="k", tenant="a")
    second = spane.enqueue_workflow("quick", 1, idempotency_key="k", tenant="b")
    assert first != second
    assert len(spane.list_executions()) == 2


def test_run_with_an_idempotency_key(rt: Runtime) -> None:
    first = spane.run(QUICK, 1, idempotency_key="once", timeout=TIMEOUT)
    second = spane.run(QUICK, 2, idempotency_key="once", timeout=TIMEOUT)
    assert second.id == first.id
    assert second.output == 1


# -- the error tree ----------------------------------------------------------------------


def test_every_error_raised_to_callers_is_a_spane_error(rt: Runtime) -> None:
    spane.register_workflow(ORDERS)
    spane.register_workflow(HOLD)
    done = spane.run(QUICK, 1, timeout=TIMEOUT)
    running = spane.enqueue_workflow("hold", None)
    calls = [
        (spane.InputError, lambda: spane.enqueue_workflow("orders", {})),
        (spane.InputError, lambda: spane.enqueue_workflow("quick", float("nan"))),
        (spane.InputError, lambda: spane.enqueue_workflow("quick", 1, priority="x")),
        (spane.InputError, lambda: spane.enqueue_workflow("quick", 1, tenant="")),
        (spane.UnknownWorkflow, lambda: spane.enqueue_workflow("missing", 1)),
        (spane.UnknownWorkflow, lambda: spane.run("missing", 1, timeout=1)),
        (spane.UnknownExecution, lambda: spane.get_execution("missing")),
        (spane.UnknownExecution, lambda: spane.cancel("missing")),
        (spane.InvalidTransition, lambda: spane.cancel(done.id)),
        (spane.WaitTimeout, lambda: spane.wait(running, timeout=0.05)),
        (spane.DefinitionError, lambda: spane.register_workflow({"id": "Bad Id", "nodes": []})),
    ]
    for expected, call in calls:
        with pytest.raises(spane.SpaneError) as info:
            call()
        assert isinstance(info.value, expected), (expected, info.value)
        assert str(info.value)
    spane.cancel(running)
