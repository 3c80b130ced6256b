"""Sub-workflows: nesting, failure, outputs, the depth cap, fan-out and cancellation.

Every scenario runs on Redis + PostgreSQL with real worker subprocesses (``workers``);
most also run on the embedded twin (``embedded``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import spane
import tests.nodes  # noqa: F401  (registers the test node types)
from spane import runtime as runtime_module
from spane.runtime import Runtime
from tests.conftest import embedded_settings
from tests.history import BACKENDS, ENDED, events, node_status, wait_for


@pytest.fixture(params=BACKENDS)
def capped(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    """Like ``backend``, with sub-workflow nesting capped at 2 levels."""
    if request.param == "workers":
        runtime: Runtime = request.getfixturevalue("prod")
        request.getfixturevalue("workers").start(runtime.settings, SPANE_MAX_DEPTH="2")
        yield runtime
        return
    runtime = Runtime(embedded_settings(tmp_path, max_depth=2))
    old = runtime_module.install(runtime)
    try:
        yield runtime
    finally:
        runtime_module.install(old)
        runtime.close()


@pytest.fixture(params=BACKENDS)
def client(request: pytest.FixtureRequest) -> Runtime:
    """A runtime on SQLite or on PostgreSQL, without workers (registration only)."""
    name = "rt" if request.param == "embedded" else "prod"
    runtime: Runtime = request.getfixturevalue(name)
    return runtime


# -- helpers ---------------------------------------------------------------------------


def node_kinds(execution_id: str, node_id: str) -> list[str]:
    """The kinds of a node's events, without ``queued``."""
    return [e.kind for e in events(execution_id, node_id) if e.kind != "queued"]


def only_child(execution_id: str) -> str:
    children = spane.get_execution(execution_id).children
    return children[0] if len(children) == 1 else ""


def assert_nothing_open(execution_ids: list[str]) -> None:
    for execution_id in execution_ids:
        ex = spane.get_execution(execution_id)
        assert ex.done, (execution_id, ex.status)
        assert {n.status for n in ex.nodes.values()} <= set(ENDED), (execution_id, ex.nodes)


# -- nesting ---------------------------------------------------------------------------

INNER = {
    "id": "inner",
    "nodes": [
        {"id": "hold", "type": "delay", "config": {"duration": "1500ms"}},
        {"id": "plus", "type": "add_one", "after": ["hold"]},
    ],
}
MIDDLE = {
    "id": "middle",
    "nodes": [
        {"id": "prep", "type": "add_one"},
        {
            "id": "call_inner",
            "type": "subworkflow",
            "after": ["prep"],
            "config": {"workflow": "inner"},
        },
        {"id": "after_inner", "type": "add_one", "after": ["call_inner"]},
    ],
}
OUTER = {
    "id": "outer",
    "nodes": [
        {"id": "start", "type": "echo"},
        {
            "id": "call_middle",
            "type": "subworkflow",
            "after": ["start"],
            "config": {"workflow": "middle", "input": "n"},
        },
        {
            "id": "after_middle",
            "type": "transform",
            "after": ["call_middle"],
            "config": {"expression": "{middle: @}"},
        },
    ],
}


def test_three_level_nesting_continues_downstream_after_each_child(backend: Runtime) -> None:
    for definition in (INNER, MIDDLE, OUTER):
        spane.register_workflow(definition)
    outer_id = spane.enqueue_workflow("outer", {"n": 10})

    # While the grandchild sleeps, both ancestors' subworkflow nodes are parked.
    middle_id = wait_for(lambda: only_child(outer_id), "the middle execution")
    inner_id = wait_for(lambda: only_child(middle_id), "the inner execution")
    wait_for(lambda: node_status(inner_id, "hold") == "waiting", "the inner delay to park")
    assert spane.get_execution(inner_id).status == "running"
    assert node_status(outer_id, "call_middle") == "waiting"
    assert node_status(middle_id, "call_inner") == "waiting"
    assert node_status(outer_id, "after_middle") == "pending"

    outer = spane.wait(outer_id, timeout=60)
    middle = spane.get_execution(middle_id)
    inner = spane.get_execution(inner_id)

    # 10 -> middle(10): prep 11 -> inner(11): 12 -> after_inner 13 -> outer {middle: 13}
    assert outer.status == middle.status == inner.status == "completed"
    assert inner.output == 12
    assert middle.nodes["call_inner"].output == 12
    assert middle.output == 13
    assert outer.nodes["call_middle"].output == 13
    assert outer.output == {"middle": 13}

    assert outer.parent_id is None and outer.children == [middle_id]
    assert middle.parent_id == outer_id and middle.parent_node_id == "call_middle"
    assert middle.children == [inner_id]
    assert inner.parent_id == middle_id and inner.parent_node_id == "call_inner"
    assert inner.children == []
    assert outer.nodes["call_middle"].child_id == middle_id
    assert middle.nodes["call_inner"].child_id == inner_id
    assert [s.id for s in spane.list_executions(parent_id=outer_id)] == [middle_id]

    for parent, node, child, downstream in (
        (outer_id, "call_middle", middle_id, "after_middle"),
        (middle_id, "call_inner", inner_id, "after_inner"),
    ):
        assert node_kinds(parent, node) == ["started", "waiting_on_child", "woken"]
        parked = events(parent, node, "waiting_on_child")[0]
        woken = events(parent, node, "woken")[0]
        assert parked.detail == child
        child_started = events(child, kind="execution_started")[0]
        child_done = events(child, kind="execution_completed")[0]
        assert parked.at <= child_started.at <= child_done.at <= woken.at
        # The node after the sub-workflow started only once the parent was woken.
        assert events(parent, downstream, "started")[0].id > woken.id
        assert node_kinds(parent, downstream) == ["started", "completed"]


# -- failure ---------------------------------------------------------------------------

BROKEN = {
    "id": "broken",
    "nodes": [
        {"id": "ok", "type": "echo"},
        {
            "id": "boom",
            "type": "fail",
            "after": ["ok"],
            "config": {"message": "inner boom"},
            "retry": {"max_attempts": 1},
        },
    ],
}


def test_child_failure_fails_the_parent_node_after_its_retries(backend: Runtime) -> None:
    spane.register_workflow(BROKEN)
    spane.register_workflow(
        {
            "id": "calls-broken",
            "nodes": [
                {
                    "id": "call",
                    "type": "subworkflow",
                    "config": {"workflow": "broken"},
                    "retry": {"max_attempts": 2, "delay": "10ms"},
                },
                {"id": "next", "type": "echo", "after": ["call"]},
            ],
        }
    )
    ex = spane.run("calls-broken", 1, timeout=60)

    assert ex.status == "failed"
    assert ex.nodes["call"].status == "failed"
    assert ex.nodes["call"].attempts == 2
    assert ex.nodes["next"].status == "cancelled"
    assert "inner boom" in (ex.error or "") and "child execution" in (ex.error or "")
    # One child execution per attempt, each failed.
    assert len(ex.children) == 2
    for child_id in ex.children:
        child = spane.get_execution(child_id)
        assert child.status == "failed" and child.parent_id == ex.id
        assert child.nodes["boom"].status == "failed"
    assert node_kinds(ex.id, "call") == [
        "started",
        "waiting_on_child",
        "retrying",
        "started",
        "waiting_on_child",
        "failed",
    ]
    assert events(ex.id, "next", "started") == []
    assert_nothing_open([ex.id, *ex.children])


def test_child_failure_with_continue_on_fail_passes_the_error_on(backend: Runtime) -> None:
    spane.register_workflow(BROKEN)
    spane.register_workflow(
        {
            "id": "tolerates-broken",
            "nodes": [
                {
                    "id": "call",
                    "type": "subworkflow",
                    "config": {"workflow": "broken"},
                    "retry": {"max_attempts": 1},
                    "continue_on_fail": True,
                },
                {"id": "next", "type": "echo", "after": ["call"]},
            ],
        }
    )
    ex = spane.run("tolerates-broken", 1, timeout=60)

    assert ex.status == "completed"
    assert ex.nodes["call"].status == "failed"
    assert len(ex.children) == 1
    assert spane.get_execution(ex.children[0]).status == "failed"
    assert ex.nodes["next"].status == "completed"
    assert isinstance(ex.output, dict) and set(ex.output) == {"error"}
    assert "inner boom" in ex.output["error"]
    assert ex.nodes["call"].output == ex.output


# -- outputs ---------------------------------------------------------------------------


def test_several_final_nodes_and_output_mapping(backend: Runtime) -> None:
    spane.register_workflow(
        {
            "id": "pair",
            "nodes": [
                {"id": "src", "type": "echo"},
                {"id": "left", "type": "add_one", "after": ["src"]},
                {
                    "id": "right",
                    "type": "transform",
                    "after": ["src"],
                    "config": {"expression": "{twice: [@, @]}"},
                },
            ],
        }
    )
    spane.register_workflow(
        {
            "id": "uses-pair",
            "nodes": [
                {
                    "id": "whole",
                    "type": "subworkflow",
                    "config": {"workflow": "pair", "input": "v"},
                },
                {
                    "id": "mapped",
                    "type": "subworkflow",
                    "config": {
                        "workflow": "pair",
                        "input": "v",
                        "output": "{l: left, r: right.twice[1]}",
                    },
                },
                {
                    "id": "picked",
                    "type": "subworkflow",
                    "config": {"workflow": "pair", "input": "v", "output": "left"},
                },
                {"id": "joined", "type": "echo", "after": ["whole", "mapped", "picked"]},
            ],
        }
    )
    ex = spane.run("uses-pair", {"v": 5}, timeout=60)

    assert ex.status == "completed"
    assert ex.nodes["whole"].output == {"left": 6, "right": {"twice": [5, 5]}}
    assert ex.nodes["mapped"].output == {"l": 6, "r": 5}
    assert ex.nodes["picked"].output == 6
    assert ex.output == {
        "whole": {"left": 6, "right": {"twice": [5, 5]}},
        "mapped": {"l": 6, "r": 5},
        "picked": 6,
    }
    assert len(ex.children) == 3
    for child_id in ex.children:
        child = spane.get_execution(child_id)
        assert child.input == 5
        assert child.output == {"left": 6, "right": {"twice": [5, 5]}}


# -- depth -----------------------------------------------------------------------------


def _chain() -> None:
    """d0 -> d1 -> d2 -> d3 (a leaf); each level adds one."""
    spane.register_workflow({"id": "d3", "nodes": [{"id": "leaf", "type": "add_one"}]})
    for level in (2, 1, 0):
        spane.register_workflow(
            {
                "id": f"d{level}",
                "nodes": [
                    {
                        "id": "down",
                        "type": "subworkflow",
                        "config": {"workflow": f"d{level + 1}"},
                        "retry": {"max_attempts": 1},
                    },
                    {"id": "up", "type": "add_one", "after": ["down"]},
                ],
            }
        )


def test_nesting_up_to_the_cap_runs(capped: Runtime) -> None:
    _chain()
    ex = spane.run("d1", 0, timeout=60)  # d1 (depth 0) -> d2 (1) -> d3 (2)
    assert ex.status == "completed"
    assert ex.output == 3


def test_nesting_deeper_than_the_cap_fails_clearly(capped: Runtime) -> None:
    _chain()
    ex = spane.run("d0", 0, timeout=60)  # d3 would run at depth 3
    assert ex.status == "failed"
    assert "SPANE_MAX_DEPTH=2" in (ex.error or "")
    assert "'d3'" in (ex.error or "")
    d1 = spane.get_execution(only_child(ex.id))
    d2 = spane.get_execution(only_child(d1.id))
    assert (d1.workflow_id, d2.workflow_id) == ("d1", "d2")
    assert d2.children == []  # the over-deep child was never created
    assert d2.nodes["down"].status == "failed"
    assert "SPANE_MAX_DEPTH=2" in (d2.nodes["down"].error or "")
    assert all(s.workflow_id != "d3" for s in spane.list_executions())
    assert_nothing_open([ex.id, d1.id, d2.id])


def test_recursive_registration_is_refused(client: Runtime) -> None:
    with pytest.raises(spane.DefinitionError, match="recursive sub-workflow"):
        spane.register_workflow(
            {
                "id": "selfish",
                "nodes": [{"id": "me", "type": "subworkflow", "config": {"workflow": "selfish"}}],
            }
        )
    assert client.store.latest_version("selfish") is None

    spane.register_workflow({"id": "ra", "nodes": [{"id": "leaf", "type": "echo"}]})
    for name, target in (("rb", "ra"), ("rc", "rb")):
        spane.register_workflow(
            {
                "id": name,
                "nodes": [{"id": "call", "type": "subworkflow", "config": {"workflow": target}}],
            }
        )
    # A new version of ra calling rc would close the cycle ra -> rc -> rb -> ra.
    with pytest.raises(spane.DefinitionError, match="ra -> rc -> rb -> ra") as info:
        spane.register_workflow(
            {
                "id": "ra",
                "nodes": [{"id": "call", "type": "subworkflow", "config": {"workflow": "rc"}}],
            }
        )
    assert info.value.problems[0].path == "nodes[0].config.workflow"
    assert client.store.latest_version("ra") == 1


# -- fan-out ---------------------------------------------------------------------------

FAN_OUT = 200


def test_fan_out_of_sub_workflows_then_a_join(backend: Runtime) -> None:
    spane.register_workflow({"id": "leaf", "nodes": [{"id": "inc", "type": "add_one"}]})
    names = [f"s{i:03d}" for i in range(FAN_OUT)]
    nodes: list[dict[str, Any]] = [
        {
            "id": name,
            "type": "subworkflow",
            "config": {"workflow": "leaf", "input": f"`{i}`"},
            "retry": {"max_attempts": 1},
        }
        for i, name in enumerate(names)
    ]
    nodes.append({"id": "join", "type": "transform", "after": names, "config": {"expression": "@"}})
    spane.register_workflow({"id": "fan", "nodes": nodes})

    ex = spane.run("fan", None, timeout=120)

    assert ex.status == "completed"
    assert ex.output == {name: i + 1 for i, name in enumerate(names)}
    assert len(ex.children) == FAN_OUT
    assert {spane.get_execution(c).status for c in ex.children} == {"completed"}
    history = spane.history(ex.id)
    count = {kind: sum(1 for e in history if e.kind == kind) for kind in {e.kind for e in history}}
    assert count["waiting_on_child"] == FAN_OUT
    assert count["woken"] == FAN_OUT
    assert count["execution_completed"] == 1
    assert [e.kind for e in history if e.node_id == "join"] == ["queued", "started", "completed"]
    join_started = next(e for e in history if e.node_id == "join" and e.kind == "started")
    assert all(e.id < join_started.id for e in history if e.kind == "woken")


# -- cancellation ----------------------------------------------------------------------


def test_cancelling_a_parent_cancels_its_running_children(backend: Runtime) -> None:
    spane.register_workflow(
        {
            "id": "sleeper",
            "nodes": [
                {"id": "nap", "type": "delay", "config": {"duration": "1h"}},
                {"id": "after_nap", "type": "echo", "after": ["nap"]},
            ],
        }
    )
    spane.register_workflow(
        {
            "id": "middle-sleeper",
            "nodes": [
                {"id": "pre", "type": "echo"},
                {
                    "id": "deeper",
                    "type": "subworkflow",
                    "after": ["pre"],
                    "config": {"workflow": "sleeper"},
                },
            ],
        }
    )
    spane.register_workflow(
        {
            "id": "boss",
            "nodes": [
                {"id": "a", "type": "subworkflow", "config": {"workflow": "sleeper"}},
                {"id": "b", "type": "subworkflow", "config": {"workflow": "middle-sleeper"}},
                {"id": "c", "type": "echo", "after": ["a", "b"]},
            ],
        }
    )
    boss_id = spane.enqueue_workflow("boss", 1)

    def sleepers() -> list[str] | None:
        boss = spane.get_execution(boss_id)
        if len(boss.children) != 2:
            return None
        by_workflow = {spane.get_execution(c).workflow_id: c for c in boss.children}
        grandchild = only_child(by_workflow["middle-sleeper"])
        if not grandchild:
            return None
        found = [by_workflow["sleeper"], grandchild]
        if all(node_status(s, "nap") == "waiting" for s in found):
            return [by_workflow["middle-sleeper"], *found]
        return None

    middle_id, child_id, grandchild_id = wait_for(sleepers, "every sleeper to park")
    everything = [boss_id, middle_id, child_id, grandchild_id]
    assert node_status(boss_id, "a") == node_status(boss_id, "b") == "waiting"

    spane.cancel(boss_id)

    for execution_id in everything:
        assert spane.get_execution(execution_id).status == "cancelled", execution_id
        assert events(execution_id, kind="execution_cancelled")
    boss = spane.get_execution(boss_id)
    assert {n: s.status for n, s in boss.nodes.items()} == {
        "a": "cancelled",
        "b": "cancelled",
        "c": "cancelled",
    }
    for sleeper in (child_id, grandchild_id):
        nodes = spane.get_execution(sleeper).nodes
        assert (nodes["nap"].status, nodes["after_nap"].status) == ("cancelled", "cancelled")
    middle = spane.get_execution(middle_id).nodes
    assert (middle["pre"].status, middle["deeper"].status) == ("completed", "cancelled")

    # Nothing wakes up later: give sweeps and in-flight messages a moment, then look again.
    time.sleep(1.5)
    assert_nothing_open(everything)
    assert spane.list_executions(status="running") == []
    assert spane.list_executions(status="paused") == []
    with pytest.raises(spane.InvalidTransition):
        spane.cancel(child_id)


def test_cancelling_a_child_fails_the_parent_node(backend: Runtime) -> None:
    spane.register_workflow(
        {"id": "sleeper", "nodes": [{"id": "nap", "type": "delay", "config": {"duration": "1h"}}]}
    )
    spane.register_workflow(
        {
            "id": "calls-sleeper",
            "nodes": [
                {"id": "call", "type": "subworkflow", "config": {"workflow": "sleeper"}},
                {"id": "next", "type": "echo", "after": ["call"]},
            ],
        }
    )
    parent_id = spane.enqueue_workflow("calls-sleeper", 1)
    child_id = wait_for(lambda: only_child(parent_id), "the child execution")
    wait_for(lambda: node_status(child_id, "nap") == "waiting", "the child's delay to park")

    spane.cancel(child_id)

    # The parent is not cancelled by its child, but it does not hang either: the
    # parked node is woken (by the sweep) and fails at once (a cancelled child is final).
    parent = spane.wait(parent_id, timeout=60)
    assert parent.status == "failed"
    assert parent.nodes["call"].status == "failed"
    assert parent.nodes["call"].attempts == 1
    assert f"child execution {child_id} cancelled" in (parent.nodes["call"].error or "")
    assert parent.nodes["next"].status == "cancelled"
    assert spane.get_execution(child_id).status == "cancelled"
    assert parent.children == [child_id]


def test_pinned_child_version_and_refused_child_input(backend: Runtime) -> None:
    spane.register_workflow(
        {
            "id": "strict",
            "input_schema": {"type": "integer"},
            "nodes": [{"id": "work", "type": "add_one"}],
        }
    )
    spane.register_workflow(
        {
            "id": "strict",
            "input_schema": {"type": "integer"},
            "nodes": [{"id": "work", "type": "echo"}],
        }
    )
    spane.register_workflow(
        {
            "id": "calls-strict",
            "nodes": [
                {"id": "v1", "type": "subworkflow", "config": {"workflow": "strict", "version": 1}},
                {"id": "latest", "type": "subworkflow", "config": {"workflow": "strict"}},
            ],
        }
    )
    ex = spane.run("calls-strict", 5, timeout=60)
    assert ex.status == "completed"
    assert ex.output == {"v1": 6, "latest": 5}
    versions = sorted(spane.get_execution(c).version for c in ex.children)
    assert versions == [1, 2]

    # A child input the child's schema refuses fails the node with a clear error.
    spane.register_workflow(
        {
            "id": "feeds-strict-badly",
            "nodes": [
                {
                    "id": "call",
                    "type": "subworkflow",
                    "config": {"workflow": "strict", "input": "'not a number'"},
                },
            ],
        }
    )
    bad = spane.run("feeds-strict-badly", 5, timeout=60)
    assert bad.status == "failed"
    assert "could not start sub-workflow" in (bad.nodes["call"].error or "")
    assert bad.children == []
    assert bad.nodes["call"].attempts == 1


# -- engine bugs (white-box repros of races) -------------------------------------------


def test_a_spawn_racing_a_cancel_starts_no_child(rt: Runtime) -> None:
    from spane import executor, starts
    from spane.context import Spawn

    spane.register_workflow(
        {"id": "sleeper", "nodes": [{"id": "nap", "type": "delay", "config": {"duration": "1h"}}]}
    )
    spane.register_workflow(
        {
            "id": "mom",
            "nodes": [{"id": "call", "type": "subworkflow", "config": {"workflow": "sleeper"}}],
        }
    )
    # Create the execution without sending its messages, so this test owns the attempt.
    mom_id, _ = starts.create(rt, "mom", 1, version=None, tenant="default", lane=None)
    claim = rt.store.claim_node(mom_id, "call", 1)
    assert claim is not None
    spane.cancel(mom_id)  # lands while the node's code is running
    executor._spawn(rt, claim, Spawn("sleeper", None, 1, None))

    mom = spane.get_execution(mom_id)
    assert mom.status == "cancelled"
    assert mom.children == []  # bug: a running child of a cancelled parent
    assert mom.nodes["call"].status in ENDED  # bug: stays "waiting" forever


def test_cancel_ends_running_children_and_keeps_ended_ones(rt: Runtime) -> None:
    spane.register_workflow(
        {"id": "sleeper", "nodes": [{"id": "nap", "type": "delay", "config": {"duration": "1h"}}]}
    )
    spane.register_workflow({"id": "quick", "nodes": [{"id": "one", "type": "noop"}]})
    spane.register_workflow(
        {
            "id": "twins",
            "nodes": [
                {"id": "a", "type": "subworkflow", "config": {"workflow": "sleeper"}},
                {"id": "b", "type": "subworkflow", "config": {"workflow": "quick"}},
            ],
        }
    )
    parent_id = spane.enqueue_workflow("twins", 1)
    wait_for(
        lambda: (
            (
                spane.get_execution(parent_id).nodes["b"].status == "completed"
                and spane.get_execution(parent_id).nodes["a"].status == "waiting"
            )
            or None
        ),
        "the quick child to end and the sleeper child to start",
    )
    spane.cancel(parent_id)  # the execution and its running children, in one transaction

    children = {
        spane.get_execution(c).workflow_id: spane.get_execution(c)
        for c in spane.get_execution(parent_id).children
    }
    assert children["sleeper"].status == "cancelled"
    assert children["quick"].status == "completed"


def test_pausing_a_parent_holds_it_while_the_child_finishes(backend: Runtime) -> None:
    spane.register_workflow(
        {
            "id": "short-nap",
            "nodes": [{"id": "nap", "type": "delay", "config": {"duration": "1500ms"}}],
        }
    )
    spane.register_workflow(
        {
            "id": "holds",
            "nodes": [
                {"id": "call", "type": "subworkflow", "config": {"workflow": "short-nap"}},
                {"id": "next", "type": "add_one", "after": ["call"]},
            ],
        }
    )
    parent_id = spane.enqueue_workflow("holds", 1)
    child_id = wait_for(lambda: only_child(parent_id), "the child execution")
    spane.pause(parent_id)

    # Pausing a parent does not pause its child; but like a timer, the parked node is
    # woken only once the parent is resumed, and nothing after it starts before.
    assert spane.wait(child_id, timeout=60).status == "completed"
    time.sleep(1.5)
    parent = spane.get_execution(parent_id)
    assert parent.status == "paused"
    assert parent.nodes["call"].status == "waiting"
    assert parent.nodes["next"].status == "pending"

    spane.resume(parent_id)
    parent = spane.wait(parent_id, timeout=60)
    assert parent.status == "completed" and parent.output == 2
    resumed = events(parent_id, kind="resumed")[0]
    assert events(parent_id, "call", "woken")[0].id > resumed.id
    assert events(parent_id, "next", "started")[0].id > resumed.id
