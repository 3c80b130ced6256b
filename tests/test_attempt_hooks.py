"""The per-attempt middleware hooks see every attempt, inline hops included."""

from __future__ import annotations

import threading
import time
from typing import Any

from dramatiq import Broker

import spane
from spane.middleware.attempts import Attempt, AttemptMiddleware, AttemptResult
from spane.runtime import Runtime

TIMEOUT = 30


def settled(calls: list[tuple[str, str, str, Any]], afters: int) -> None:
    """Wait until ``afters`` after-hook calls were seen.

    After-hooks run once the outcome is recorded, so the execution can end (and
    ``spane.run`` return) a moment before the last of them.
    """
    deadline = time.monotonic() + TIMEOUT
    while sum(1 for c in calls if c[1] == "after") < afters and time.monotonic() < deadline:
        time.sleep(0.01)


class Recorder(AttemptMiddleware):
    """Records every hook call in order."""

    def __init__(self, name: str, calls: list[tuple[str, str, str, Any]]) -> None:
        self.name = name
        self.calls = calls
        self.lock = threading.Lock()
        self.inline: dict[str, bool] = {}

    def before_attempt(self, broker: Broker, attempt: Attempt) -> None:
        with self.lock:
            self.calls.append((self.name, "before", attempt.node_id, attempt.attempt))
        attempt.state[self.name] = attempt.attempt
        self.inline.setdefault(attempt.node_id, attempt.inline)

    def after_attempt(self, broker: Broker, attempt: Attempt, result: AttemptResult) -> None:
        with self.lock:
            seen = attempt.state[self.name]
            self.calls.append((self.name, "after", attempt.node_id, (seen, str(result.outcome))))


class Broken(AttemptMiddleware):
    """A hook that always raises: the attempt must not notice."""

    def before_attempt(self, broker: Broker, attempt: Attempt) -> None:
        raise RuntimeError("broken before")

    def after_attempt(self, broker: Broker, attempt: Attempt, result: AttemptResult) -> None:
        raise RuntimeError("broken after")


def test_hooks_wrap_every_attempt_and_unwind_in_reverse(rt: Runtime) -> None:
    calls: list[tuple[str, str, str, Any]] = []
    outer = Recorder("outer", calls)
    rt.broker.add_middleware(outer)
    rt.broker.add_middleware(Recorder("inner", calls))
    rt.broker.add_middleware(Broken())
    spane.register_workflow(
        {
            "id": "hooked",
            "nodes": [
                {"id": "a", "type": "echo"},
                {"id": "b", "type": "add_one", "after": ["a"]},
                {"id": "c", "type": "fail", "after": ["b"], "config": {"times": 1}},
            ],
        }
    )
    execution = spane.run("hooked", 1, timeout=TIMEOUT)
    assert execution.status == "completed", execution.error
    settled(calls, 8)  # two recorders x (a, b, c retried, c completed)
    # a and b run inline after each other in one thread: still one before/after pair each.
    for node_id in ("a", "b"):
        mine = [c for c in calls if c[2] == node_id]
        assert [(c[0], c[1]) for c in mine] == [
            ("outer", "before"),
            ("inner", "before"),
            ("inner", "after"),
            ("outer", "after"),
        ]
        assert mine[-1][3] == (1, "completed")
    assert outer.inline["a"] is False and outer.inline["b"] is True

    def outcomes() -> list[Any]:
        return [c[3] for c in calls if c[2] == "c" and c[0] == "outer" and c[1] == "after"]

    # The last after-hook runs once the outcome is committed: maybe after ``run`` returned.
    deadline = time.monotonic() + TIMEOUT
    while len(outcomes()) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert outcomes() == [(1, "retried"), (2, "completed")]


def test_hooks_see_the_attempt_fail_for_good(rt: Runtime) -> None:
    calls: list[tuple[str, str, str, Any]] = []
    rt.broker.add_middleware(Recorder("only", calls))
    spane.register_workflow(
        {
            "id": "hooked-fail",
            "nodes": [{"id": "x", "type": "fail", "config": {"retryable": False}}],
        }
    )
    execution = spane.run("hooked-fail", None, timeout=TIMEOUT)
    assert execution.status == "failed"
    settled(calls, 1)
    assert [c[3] for c in calls if c[1] == "after"] == [(1, "failed")]


def test_hooks_see_base_exceptions_and_fenced_timeouts(rt: Runtime) -> None:
    calls: list[tuple[str, str, str, Any]] = []
    rt.broker.add_middleware(Recorder("only", calls))

    def after(node_id: str) -> list[Any]:
        return [c[3] for c in calls if c[1] == "after" and c[2] == node_id]

    exits = {"id": "x", "type": "raise_base", "config": {"kind": "system_exit"}}
    execution = spane.run({"id": "hooked-exit", "nodes": [exits]}, None, timeout=TIMEOUT)
    assert execution.status == "failed"
    assert after("x") == [(1, "retried"), (2, "failed")]

    slow = {"id": "slow", "type": "block", "config": {"seconds": 1.5}}
    execution = spane.run({"id": "hooked-slow", "nodes": [slow]}, None, timeout=TIMEOUT)
    assert execution.status == "failed"
    # A timed-out attempt's hooks close once its thread comes back from the sleep.
    deadline = time.monotonic() + TIMEOUT
    while len(after("slow")) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert after("slow") == [(1, "timed_out"), (2, "failed")]


@spane.node_type("starts_a_leaf")
def _starts_a_leaf(ctx: spane.NodeContext) -> str:
    return spane.enqueue_workflow("leaf", ctx.input)


def test_a_workflow_started_from_node_code_is_sent_not_run_inline(rt: Runtime) -> None:
    calls: list[tuple[str, str, str, Any]] = []
    recorder = Recorder("recorder", calls)
    rt.broker.add_middleware(recorder)
    spane.register_workflow({"id": "leaf", "nodes": [{"id": "leaf_node", "type": "echo"}]})
    spane.register_workflow({"id": "starter", "nodes": [{"id": "start", "type": "starts_a_leaf"}]})
    starter = spane.run("starter", 5, timeout=TIMEOUT)
    leaf = spane.wait(starter.output, timeout=TIMEOUT)
    assert leaf.status == "completed" and leaf.output == 5
    settled(calls, 2)
    # Sending a message always sends: only the executor keeps a successor of the
    # node it ran, never an execution that node code started.
    assert recorder.inline == {"start": False, "leaf_node": False}
