"""Execution control: pause, resume, cancel, replay, rerun, dead letters, idempotent
enqueues and history.

Every scenario runs on Redis + PostgreSQL with real worker subprocesses (``workers``)
and on the embedded twin (``embedded``).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import spane
import tests.nodes  # noqa: F401  (registers the test node types)
from spane.runtime import Runtime
from spane.store.history import Event
from tests.history import events, node_status, wait_for

# -- helpers ---------------------------------------------------------------------------


def one(execution_id: str, node_id: str | None, kind: str) -> Event:
    found = events(execution_id, node_id, kind)
    assert len(found) == 1, (node_id, kind, found)
    return found[0]


def started(execution_id: str, node_id: str) -> int:
    return len(events(execution_id, node_id, "started"))


def nothing_started_while_paused(execution_id: str) -> None:
    """No node started between a ``paused`` event and the next ``resumed``."""
    paused = False
    for e in spane.history(execution_id):
        if e.kind == "paused":
            paused = True
        elif e.kind == "resumed":
            paused = False
        elif paused:
            assert e.kind != "started", f"node {e.node_id} started while paused"


# -- pause and resume ------------------------------------------------------------------


def _nap(seconds: float) -> None:
    spane.register_workflow(
        {
            "id": "nap",
            "nodes": [
                {"id": "wait", "type": "delay", "config": {"duration": seconds}},
                {"id": "after", "type": "echo", "after": ["wait"]},
            ],
        }
    )


def test_resume_before_the_timer_is_due_never_fires_it_early(backend: Runtime) -> None:
    duration = 2.0
    _nap(duration)
    ex_id = spane.enqueue_workflow("nap", "x")
    wait_for(lambda: node_status(ex_id, "wait") == "waiting", "the delay to park")
    spane.pause(ex_id)
    assert spane.get_execution(ex_id).status == "paused"
    time.sleep(0.3)
    spane.resume(ex_id)
    resumed_at = time.time()
    wait_started = one(ex_id, "wait", "started").at
    assert resumed_at < wait_started + duration  # resumed before the timer fell due

    ex = spane.wait(ex_id, timeout=60)

    assert ex.status == "completed" and ex.output == "x"
    fired = one(ex_id, "wait", "timer_fired")
    assert fired.at >= wait_started + duration
    assert one(ex_id, "after", "started").at >= fired.at
    assert [e.kind for e in events(ex_id) if e.node_id is None] == [
        "execution_started",
        "paused",
        "resumed",
        "execution_completed",
    ]
    nothing_started_while_paused(ex_id)


def test_a_timer_due_while_paused_fires_on_resume(backend: Runtime) -> None:
    duration = 1.0
    _nap(duration)
    ex_id = spane.enqueue_workflow("nap", "x")
    wait_for(lambda: node_status(ex_id, "wait") == "waiting", "the delay to park")
    spane.pause(ex_id)
    due = one(ex_id, "wait", "started").at + duration
    assert one(ex_id, None, "paused").at < due  # paused before the timer fell due
    # Stay paused well past the due time (the broker's timer message and several
    # sweeps come and go), then check nothing moved.
    time.sleep(max(0.0, due - time.time()) + 1.5)
    ex = spane.get_execution(ex_id)
    assert ex.status == "paused"
    assert (ex.nodes["wait"].status, ex.nodes["after"].status) == ("waiting", "pending")

    spane.resume(ex_id)
    resumed = one(ex_id, None, "resumed")
    ex = spane.wait(ex_id, timeout=60)

    assert ex.status == "completed" and ex.output == "x"
    fired = one(ex_id, "wait", "timer_fired")
    assert fired.at >= resumed.at and fired.id > resumed.id
    assert one(ex_id, "after", "started").at >= resumed.at
    assert ex.nodes["wait"].finished_at is not None
    assert ex.nodes["wait"].finished_at >= resumed.at
    nothing_started_while_paused(ex_id)


def test_a_paused_execution_starts_no_new_node(backend: Runtime) -> None:
    spane.register_workflow(
        {
            "id": "fork",
            "nodes": [
                {"id": "slow", "type": "sleep", "config": {"seconds": 1.5}},
                {"id": "b", "type": "add_one", "after": ["slow"]},
                {"id": "c", "type": "add_one", "after": ["slow"]},
                {"id": "d", "type": "add_one", "after": ["b"]},
            ],
        }
    )
    ex_id = spane.enqueue_workflow("fork", 1)
    wait_for(lambda: node_status(ex_id, "slow") == "running", "the slow node to start")
    spane.pause(ex_id)

    # The in-flight node finishes; its successors are queued but do not start.
    wait_for(lambda: node_status(ex_id, "slow") == "completed", "the in-flight node to finish")
    time.sleep(1.0)
    ex = spane.get_execution(ex_id)
    assert ex.status == "paused"
    assert {n: ex.nodes[n].status for n in ("b", "c", "d")} == {
        "b": "queued",
        "c": "queued",
        "d": "pending",
    }
    with pytest.raises(spane.InvalidTransition, match="paused"):
        spane.pause(ex_id)

    spane.resume(ex_id)
    ex = spane.wait(ex_id, timeout=60)

    assert ex.status == "completed"
    assert ex.output == {"c": 2, "d": 3}
    nothing_started_while_paused(ex_id)
    resumed = one(ex_id, None, "resumed")
    assert all(one(ex_id, n, "started").id > resumed.id for n in ("b", "c", "d"))
    with pytest.raises(spane.InvalidTransition, match="completed"):
        spane.resume(ex_id)


def test_cancel_a_paused_execution(backend: Runtime) -> None:
    _nap(3600)
    ex_id = spane.enqueue_workflow("nap", "x")
    wait_for(lambda: node_status(ex_id, "wait") == "waiting", "the delay to park")
    spane.pause(ex_id)

    spane.cancel(ex_id)

    ex = spane.get_execution(ex_id)
    assert ex.status == "cancelled"
    assert {n: s.status for n, s in ex.nodes.items()} == {"wait": "cancelled", "after": "cancelled"}
    assert [e.kind for e in events(ex_id) if e.node_id is None] == [
        "execution_started",
        "paused",
        "execution_cancelled",
    ]
    with pytest.raises(spane.InvalidTransition):
        spane.resume(ex_id)
    with pytest.raises(spane.InvalidTransition):
        spane.pause(ex_id)
    assert spane.list_executions(status="running") == []
    assert spane.list_executions(status="paused") == []


# -- replay, rerun, dead letters -------------------------------------------------------


def _fixable(tmp_path: Path) -> Path:
    """a (add_one) -> b (fails while the file exists) -> c (add_one); returns the file."""
    blocker = tmp_path / "blocker"
    blocker.write_text("fail")
    spane.register_workflow(
        {
            "id": "fixable",
            "nodes": [
                {"id": "a", "type": "add_one"},
                {
                    "id": "b",
                    "type": "fail_while_file",
                    "after": ["a"],
                    "config": {"path": str(blocker)},
                },
                {"id": "c", "type": "add_one", "after": ["b"]},
            ],
        }
    )
    return blocker


def test_replay_after_a_fixed_failure_keeps_completed_work(
    backend: Runtime, tmp_path: Path
) -> None:
    blocker = _fixable(tmp_path)
    ex = spane.run("fixable", 1, timeout=60)
    assert ex.status == "failed"
    assert "blocked while" in (ex.error or "")
    assert [ex.nodes[n].status for n in "abc"] == ["completed", "failed", "cancelled"]
    with pytest.raises(spane.InvalidTransition, match="no node"):
        spane.replay(ex.id, from_node="nope")

    blocker.unlink()
    spane.replay(ex.id)
    replayed = spane.wait(ex.id, timeout=60)

    assert replayed.id == ex.id
    assert replayed.status == "completed"
    assert replayed.output == 3
    assert replayed.error is None
    assert [replayed.nodes[n].status for n in "abc"] == ["completed"] * 3
    assert (started(ex.id, "a"), started(ex.id, "b"), started(ex.id, "c")) == (1, 2, 1)
    kinds = [e.kind for e in events(ex.id) if e.node_id is None]
    assert kinds == ["execution_started", "execution_failed", "revived", "execution_completed"]

    # A completed execution replays from a named node: it and its descendants run again.
    with pytest.raises(spane.InvalidTransition, match="completed"):
        spane.replay(ex.id)
    spane.replay(ex.id, from_node="b")
    again = spane.wait(ex.id, timeout=60)
    assert again.status == "completed" and again.output == 3
    assert (started(ex.id, "a"), started(ex.id, "b"), started(ex.id, "c")) == (1, 3, 2)


def test_replay_is_refused_while_running_and_revives_a_cancelled_execution(
    backend: Runtime,
) -> None:
    _nap(3600)
    ex_id = spane.enqueue_workflow("nap", "x")
    with pytest.raises(spane.InvalidTransition, match="running"):
        spane.replay(ex_id)
    with pytest.raises(spane.InvalidTransition, match="running"):
        spane.replay(ex_id, from_node="wait")
    spane.cancel(ex_id)
    # A cancelled execution replays its cancelled nodes.
    wait_for(lambda: spane.get_execution(ex_id).status == "cancelled", "the cancel")
    spane.replay(ex_id)
    wait_for(lambda: node_status(ex_id, "wait") == "waiting", "the replayed delay to park")
    assert spane.get_execution(ex_id).status == "running"
    spane.cancel(ex_id)


def test_rerun_starts_a_new_execution_with_the_same_input_and_version(
    backend: Runtime, tmp_path: Path
) -> None:
    blocker = _fixable(tmp_path)
    blocker.unlink()
    first = spane.run("fixable", 41, timeout=60)
    assert first.status == "completed" and first.output == 43
    # A new version must not change what a rerun runs.
    spane.register_workflow(
        {
            "id": "fixable",
            "nodes": [{"id": "a", "type": "echo"}],
        }
    )

    second_id = spane.rerun(first.id)
    second = spane.wait(second_id, timeout=60)

    assert second_id != first.id
    assert second.status == "completed"
    assert (second.workflow_id, second.version, second.tenant) == ("fixable", 1, "default")
    assert second.input == 41 and second.output == 43
    assert set(second.nodes) == {"a", "b", "c"}
    assert started(first.id, "a") == 1  # the original did not run again


def test_dead_letter_retry_revives_the_execution(backend: Runtime, tmp_path: Path) -> None:
    blocker = _fixable(tmp_path)
    ex = spane.run("fixable", 1, timeout=60)
    assert ex.status == "failed"
    letters = [d for d in spane.dead_letters() if d.execution_id == ex.id]
    assert len(letters) == 1
    letter = letters[0]
    assert (letter.kind, letter.node_id, letter.status) == ("node", "b", "open")
    assert "blocked while" in letter.reason

    blocker.unlink()
    spane.retry_dead_letter(letter.id)
    revived = spane.wait(ex.id, timeout=60)

    assert revived.id == ex.id
    assert revived.status == "completed" and revived.output == 3
    assert (started(ex.id, "a"), started(ex.id, "b"), started(ex.id, "c")) == (1, 2, 1)
    assert spane.dead_letters() == []
    retried = [d for d in spane.dead_letters(status=None) if d.id == letter.id]
    assert retried[0].status == "retried" and retried[0].retried_at is not None
    with pytest.raises(spane.InvalidTransition, match="already retried"):
        spane.retry_dead_letter(letter.id)


# -- idempotency -----------------------------------------------------------------------


def test_concurrent_idempotent_enqueues_make_one_execution(backend: Runtime) -> None:
    spane.register_workflow({"id": "wf", "nodes": [{"id": "a", "type": "add_one"}]})
    threads = 8
    barrier = threading.Barrier(threads)

    def enqueue(_: int) -> str:
        barrier.wait(timeout=30)
        return spane.enqueue_workflow("wf", 1, idempotency_key="k")

    with ThreadPoolExecutor(threads) as pool:
        ids = list(pool.map(enqueue, range(threads)))

    assert len(set(ids)) == 1
    assert [s.id for s in spane.list_executions(workflow_id="wf")] == [ids[0]]
    ex = spane.wait(ids[0], timeout=60)
    assert ex.status == "completed" and ex.output == 2
    assert started(ex.id, "a") == 1
    assert spane.enqueue_workflow("wf", 1, idempotency_key="k") == ids[0]
    assert len(spane.list_executions(workflow_id="wf")) == 1


# -- history ---------------------------------------------------------------------------


def test_history_records_every_transition_in_order(backend: Runtime) -> None:
    spane.register_workflow({"id": "tiny", "nodes": [{"id": "only", "type": "echo"}]})
    spane.register_workflow(
        {
            "id": "story",
            "nodes": [
                {"id": "flaky", "type": "fail", "config": {"times": 1}},
                {
                    "id": "sub",
                    "type": "subworkflow",
                    "after": ["flaky"],
                    "config": {"workflow": "tiny"},
                },
                {"id": "nap", "type": "delay", "after": ["sub"], "config": {"duration": "1500ms"}},
                {"id": "forever", "type": "delay", "after": ["nap"], "config": {"duration": "1h"}},
            ],
        }
    )
    ex_id = spane.enqueue_workflow("story", 7)
    wait_for(lambda: node_status(ex_id, "nap") == "waiting", "the first delay to park")
    spane.pause(ex_id)
    spane.resume(ex_id)
    wait_for(lambda: node_status(ex_id, "forever") == "waiting", "the second delay to park")
    spane.cancel(ex_id)

    history = spane.history(ex_id)
    assert [(e.node_id, e.kind) for e in history if e.kind != "queued"] == [
        (None, "execution_started"),
        ("flaky", "started"),
        ("flaky", "retrying"),
        ("flaky", "started"),
        ("flaky", "completed"),
        ("sub", "started"),
        ("sub", "waiting_on_child"),
        ("sub", "woken"),
        ("nap", "started"),
        ("nap", "waiting"),
        (None, "paused"),
        (None, "resumed"),
        ("nap", "timer_fired"),
        ("forever", "started"),
        ("forever", "waiting"),
        (None, "execution_cancelled"),
    ]
    assert [e.id for e in history] == sorted(e.id for e in history)
    assert [e.at for e in history] == sorted(e.at for e in history)
    assert all(e.execution_id == ex_id for e in history)
    retrying = next(e for e in history if e.kind == "retrying")
    assert (retrying.attempt, retrying.detail) == (1, "planned failure")
    assert [e.attempt for e in history if e.node_id == "flaky" and e.kind == "started"] == [1, 2]
    child_id = next(e.detail for e in history if e.kind == "waiting_on_child")
    assert spane.get_execution(ex_id).children == [child_id]
    assert [e.kind for e in spane.history(child_id) if e.kind != "queued"] == [
        "execution_started",
        "started",
        "completed",
        "execution_completed",
    ]
    with pytest.raises(spane.UnknownExecution):
        spane.history("no-such-execution")


def test_replay_of_a_parent_whose_child_failed_starts_a_new_child(
    backend: Runtime, tmp_path: Path
) -> None:
    blocker = _fixable(tmp_path)
    spane.register_workflow(
        {
            "id": "calls-fixable",
            "nodes": [
                {"id": "prep", "type": "add_one"},
                {
                    "id": "call",
                    "type": "subworkflow",
                    "after": ["prep"],
                    "config": {"workflow": "fixable"},
                    "retry": {"max_attempts": 1},
                },
                {"id": "done", "type": "add_one", "after": ["call"]},
            ],
        }
    )
    ex = spane.run("calls-fixable", 0, timeout=60)
    assert ex.status == "failed"
    assert len(ex.children) == 1
    first_child = ex.children[0]
    assert spane.get_execution(first_child).status == "failed"

    blocker.unlink()
    spane.replay(ex.id)
    ex = spane.wait(ex.id, timeout=60)

    # 0 -> prep 1 -> fixable(1) = 3 -> done 4
    assert ex.status == "completed" and ex.output == 4
    assert started(ex.id, "prep") == 1
    assert len(ex.children) == 2 and ex.children[0] == first_child
    assert ex.nodes["call"].child_id == ex.children[1]
    assert spane.get_execution(first_child).status == "failed"  # history is kept
    assert spane.get_execution(ex.children[1]).status == "completed"
    assert [e.kind for e in events(ex.id, "call") if e.kind != "queued"] == [
        "started",
        "waiting_on_child",
        "failed",
        "started",
        "waiting_on_child",
        "woken",
    ]


def test_replay_from_below_a_failed_node_does_not_complete_the_execution(
    backend: Runtime, tmp_path: Path
) -> None:
    _fixable(tmp_path)  # the blocker stays: b fails again if it runs
    ex = spane.run("fixable", 1, timeout=60)
    assert ex.status == "failed"
    try:
        spane.replay(ex.id, from_node="c")
    except spane.InvalidTransition:
        return  # refusing is a fine answer too
    ex = spane.wait(ex.id, timeout=60)
    # Either b is re-run (and fails again), or the execution stays failed; what must
    # not happen is an execution "completed" with a failed node and a null output.
    assert not (ex.status == "completed" and ex.nodes["b"].status == "failed"), (
        ex.status,
        {n: s.status for n, s in ex.nodes.items()},
    )
