"""Every way node code can fail is a recorded, counted attempt; timeouts fence blocked code.

Run on the embedded twin (SQLite, in-process worker) and on a real worker (Redis +
PostgreSQL), at default lease settings.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError
from structlog.testing import capture_logs

import spane
import tests.nodes as test_nodes
from spane import codec, outcomes
from spane import runtime as runtime_module
from spane.cli import main
from spane.errors import InputError
from spane.registry import RetryPolicy
from spane.runtime import Runtime
from spane.store import Dispatch
from tests import faults
from tests.conftest import embedded_settings
from tests.history import events, wait_for

TIMEOUT = 60

BASE_EXCEPTIONS = {
    "system_exit": "SystemExit: 3",
    "keyboard_interrupt": "KeyboardInterrupt",
    "generator_exit": "GeneratorExit",
    "custom": "Custom: custom base exception",
}
BAD_OUTPUTS = {
    "huge_int": "integers longer than 4000 digits",
    "surrogate": "lone surrogates",
    "deep": "nested too deeply (deeper than 500 levels)",
    "cycle": "the value contains itself",
}


def _failing_workflow() -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [
        {"id": kind, "type": "raise_base", "config": {"kind": kind}, "continue_on_fail": True}
        for kind in BASE_EXCEPTIONS
    ]
    nodes += [
        {"id": kind, "type": "bad_output", "config": {"kind": kind}, "continue_on_fail": True}
        for kind in BAD_OUTPUTS
    ]
    every = [n["id"] for n in nodes]
    nodes.append(
        {"id": "after", "type": "transform", "after": every, "config": {"expression": "`1`"}}
    )
    return {"id": "failing-code", "nodes": nodes}


def test_every_failure_of_node_code_is_a_counted_attempt(backend: Runtime) -> None:
    """BaseExceptions and refused outputs are failed attempts under the retry policy
    (two attempts here), then failed nodes with dead letters; the worker keeps serving."""
    execution = spane.run(_failing_workflow(), None, timeout=TIMEOUT)
    # The node after them ran: SystemExit and KeyboardInterrupt did not stop the worker.
    assert execution.status == "completed", execution.error
    expected = {**BASE_EXCEPTIONS, **BAD_OUTPUTS}
    for node_id, text in expected.items():
        state = execution.nodes[node_id]
        assert (state.status, state.attempts) == ("failed", 2), node_id
        assert text in (state.error or ""), (node_id, state.error)
        assert len(events(execution.id, node_id, "started")) == 2
        assert len(events(execution.id, node_id, "retrying")) == 1
    letters = {d.node_id for d in spane.dead_letters() if d.execution_id == execution.id}
    assert letters == set(expected)


def test_a_failed_execution_ends_with_its_dead_letter(backend: Runtime) -> None:
    definition = {
        "id": "exits",
        "nodes": [{"id": "x", "type": "raise_base", "config": {"kind": "system_exit"}}],
    }
    execution = spane.run(definition, None, timeout=TIMEOUT)
    assert execution.status == "failed"
    assert execution.nodes["x"].attempts == 2
    assert "SystemExit: 3" in (execution.error or "")
    assert [d.node_id for d in spane.dead_letters() if d.execution_id == execution.id] == ["x"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(10**5000, "integers longer than 4000 digits", id="huge-int"),
        pytest.param(2**64 + 1, None, id="big-int"),
        ("a\ud800b", "lone surrogates ('\\ud800' at position 1)"),
        ({"\udfff": 1}, "object keys may not contain lone surrogates"),
        ([[[1]]], None),
    ],
)
def test_check_json_refuses_what_the_encoder_would(value: Any, message: str | None) -> None:
    if message is None:
        codec.check_json(value, "out")
        codec.loads(codec.encode(value))
    else:
        with pytest.raises(InputError, match=re.escape(message)):
            codec.check_json(value, "out")


def test_check_json_names_cycles_and_allows_shared_values() -> None:
    cycle: dict[str, Any] = {"a": [1, 2]}
    cycle["a"].append(cycle)
    with pytest.raises(InputError, match=r"^out\.a\[2\]: the value contains itself"):
        codec.check_json(cycle, "out")
    shared = {"k": [1]}
    codec.check_json([shared, shared, {"again": shared}], "out")  # a DAG, not a cycle
    deep: list[Any] = []
    for _ in range(codec.MAX_NESTING):
        deep = [deep]
    with pytest.raises(InputError, match="nested too deeply"):
        codec.check_json(deep, "out")


# -- timeouts ----------------------------------------------------------------------------


def test_a_timeout_fences_code_blocked_in_sleep(backend: Runtime) -> None:
    """The attempt is recorded as timed out at its deadline, not when the sleep returns;
    no second copy of an attempt starts; the late results are stale and change nothing."""
    definition = {"id": "sleeps", "nodes": [{"id": "s", "type": "block", "config": {"seconds": 4}}]}
    execution_id = spane.enqueue_workflow(spane.register_workflow(definition)[0], None)
    ended = spane.wait(execution_id, timeout=TIMEOUT)
    assert ended.status == "failed"
    assert ended.nodes["s"].error == "attempt timed out after 1s"
    stale = wait_for(lambda: len(events(execution_id, "s", "stale_result")) == 2 or None, "stale")
    assert stale
    history = spane.history(execution_id)
    kinds = [e.kind for e in history]
    # Both attempts were recorded before either sleep returned.
    assert kinds.index("execution_failed") < kinds.index("stale_result")
    assert kinds.count("started") == 2 and "lease_expired" not in kinds
    assert spane.get_execution(execution_id).status == "failed"


def test_timeouts_fence_event_waits_and_socket_reads_and_stuck_threads_stop_work(
    tmp_path: Path,
) -> None:
    """Six threads blocked in C past their timeout: every attempt is recorded in time;
    with SPANE_MAX_STUCK_THREADS=6 the worker reports itself unhealthy and takes no work
    until the threads come back."""
    runtime = Runtime(embedded_settings(tmp_path, max_stuck_threads=6))
    old = runtime_module.install(runtime)
    test_nodes.RELEASE.clear()
    try:
        nodes = [
            {"id": how, "type": "block", "continue_on_fail": True,
             "config": {"how": how, "seconds": 30 if how == "event" else 6}}
            for how in ("sleep", "event", "socket")
        ]  # fmt: skip
        with capture_logs() as entries:
            execution = spane.run({"id": "blocked", "nodes": nodes}, None, timeout=TIMEOUT)
            assert not test_nodes.RELEASE.is_set()
            assert execution.status == "completed"
            for how in ("sleep", "event", "socket"):
                assert execution.nodes[how].error == "attempt timed out after 1s"
                assert execution.nodes[how].attempts == 2
            wait_for(lambda: not runtime.healthy or None, "the worker to report it is unhealthy")
            test_nodes.RELEASE.set()
            wait_for(lambda: runtime.healthy or None, "the stuck threads to come back", timeout=30)
        said = [e for e in entries if e["log_level"] in ("error", "info")]
        stopped = next(e for e in said if e["event"].startswith("worker stopped taking work"))
        assert stopped["stuck_threads"] == 6 and stopped["setting"] == "SPANE_MAX_STUCK_THREADS"
        assert any(e["event"].startswith("stuck threads came back") for e in said)
        wait_for(
            lambda: len(events(execution.id, kind="stale_result")) == 6 or None, "stale results"
        )
        assert spane.get_execution(execution.id).status == "completed"
        assert spane.run({"id": "after", "nodes": [{"id": "a", "type": "echo"}]}, 5).output == 5
    finally:
        test_nodes.RELEASE.set()
        runtime_module.install(old)
        runtime.close()


# -- retry backoff -------------------------------------------------------------------------


def test_backoff_has_jitter_and_never_shortens_the_wait() -> None:
    policy = RetryPolicy(max_attempts=5, backoff="exponential", delay="1s", max_delay="1m")
    waits = [outcomes.backoff(policy, 3) for _ in range(50)]
    assert all(4.0 <= w <= 4.0 * (1 + outcomes.JITTER) for w in waits)
    assert len(set(waits)) > 40


def test_a_duplicated_attempt_message_does_not_skip_the_backoff(backend: Runtime) -> None:
    retry = {"max_attempts": 2, "backoff": "fixed", "delay": "2s"}
    definition = {
        "id": "early",
        "nodes": [{"id": "f", "type": "fail", "retry": retry, "config": {"times": 1}}],
    }
    execution_id = spane.enqueue_workflow(spane.register_workflow(definition)[0], None)
    wait_for(lambda: events(execution_id, "f", "retrying"), "the first attempt to fail")
    # The retry message, duplicated without its delay, arrives at once.
    backend.dispatch([Dispatch(execution_id, "f", 2, "fail", "default")])
    ended = spane.wait(execution_id, timeout=TIMEOUT)
    assert ended.status == "completed" and ended.output["attempt"] == 2
    (retrying,) = events(execution_id, "f", "retrying")
    started = events(execution_id, "f", "started")
    assert len(started) == 2
    assert started[1].at - retrying.at >= 2.0


# -- database errors -----------------------------------------------------------------------


def test_a_completion_that_fails_on_a_database_error_is_retried_by_its_worker(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    complete = rt.store.complete_node
    failures = iter([True])

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if next(failures, False):
            raise OperationalError("UPDATE", {}, Exception("server closed the connection"))
        return complete(*args, **kwargs)

    monkeypatch.setattr(rt.store, "complete_node", flaky)
    execution = spane.run({"id": "flaky-db", "nodes": [{"id": "a", "type": "echo"}]}, 7)
    assert execution.status == "completed" and execution.output == 7
    assert [e.kind for e in events(execution.id, "a")] == ["queued", "started", "completed"]


def test_an_inline_successor_that_cannot_be_claimed_goes_through_the_broker(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A successor run inline has no message of its own: when its claim meets a database
    error, it is sent as a message, not left queued until its lease runs out."""
    claim = rt.store.claim_node
    failed: list[str] = []

    def flaky(execution_id: str, node_id: str, attempt: int, known: Any = None) -> Any:
        if node_id == "b" and not failed:
            failed.append(node_id)
            raise OperationalError("UPDATE", {}, Exception("server closed the connection"))
        return claim(execution_id, node_id, attempt, known)

    monkeypatch.setattr(rt.store, "claim_node", flaky)
    nodes = [{"id": "a", "type": "echo"}, {"id": "b", "type": "add_one", "after": ["a"]}]
    execution = spane.run(
        {"id": "inline-claim", "nodes": nodes}, 1, timeout=rt.settings.lease_seconds / 2
    )
    assert failed == ["b"] and execution.output == 2


@pytest.mark.integration
def test_killed_postgres_backends_between_claim_and_completion(prod: Runtime, workers: Any) -> None:
    """The node kills every pooled connection of its worker; the worker's completion
    meets a dead connection and is retried at once, not left for the lease."""
    # One thread: a second one's node would have its own connection killed too.
    worker = workers.start(prod.settings, threads=1)
    spane.register_workflow(
        {
            "id": "killing",
            "nodes": [
                {"id": "k", "type": "kill_backends"},
                {"id": "after", "type": "add_one", "after": ["k"]},
            ],
        }
    )
    ids = [spane.enqueue_workflow("killing", i) for i in range(3)]
    faults.wait_all_ended(prod.engine, 3, timeout=TIMEOUT)
    for i, execution_id in enumerate(ids):
        execution = spane.get_execution(execution_id)
        assert execution.status == "completed" and execution.output == i + 1
        assert [e.kind for e in events(execution_id, "k")] == ["queued", "started", "completed"]
    assert faults.event_count(prod.engine, "lease_expired") == 0
    assert "recording the attempt failed on a database error; retrying" in worker.output()


# -- tracebacks ----------------------------------------------------------------------------


def test_failed_attempts_keep_their_traceback(
    backend: Runtime, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node's error, its history and its dead letter keep the traceback (file and
    line); ``spane status``, ``spane history --full`` and ``spane dlq show`` show it."""
    monkeypatch.setenv("COLUMNS", "400")  # no folded lines in the CLI's output
    execution = spane.run({"id": "tb", "nodes": [{"id": "l", "type": "lookup"}]}, None)
    error = execution.nodes["l"].error or ""
    assert error.startswith("Traceback (most recent call last):\n")
    assert 'tests/nodes.py", line' in error and "in _route_of" in error
    assert "executor.py" not in error  # the story starts in node code
    assert error.endswith("\nKeyError: 'route'")
    assert execution.error == "node 'l' failed: KeyError: 'route'"
    assert [e.detail for e in events(execution.id, "l", "failed")] == [error]
    (letter,) = [d for d in spane.dead_letters() if d.execution_id == execution.id]
    assert letter.reason == error
    for argv in (
        ["status", execution.id],
        ["history", "--full", execution.id],
        ["dlq", "show", str(letter.id)],
    ):
        assert main(argv) == 0
        assert "in _route_of" in capsys.readouterr().out, argv

    deep = {"id": "l", "type": "lookup", "config": {"depth": 400}}
    error = spane.run({"id": "tb-deep", "nodes": [deep]}, None).nodes["l"].error or ""
    assert error.startswith("[traceback cut to its last 16384 bytes]")
    assert len(error.encode()) <= outcomes.MAX_TRACEBACK_BYTES + 100
    assert error.endswith("\nKeyError: 'route'")
