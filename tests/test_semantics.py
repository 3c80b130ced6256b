"""Execution semantics (SPEC §5) of the embedded engine: data, joins, retries, completion."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from typing import Any

import msgspec
import pytest

import spane
from spane.runtime import Runtime
from tests import nodes as test_nodes

TIMEOUT = 30
FALSY = [0, False, "", None, [], {}]


def node(node_id: str, type: str, *after: str, **fields: Any) -> dict[str, Any]:
    """One node of a definition."""
    return {"id": node_id, "type": type, "after": list(after), **fields}


def workflow(workflow_id: str, *nodes: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A workflow definition."""
    return {"id": workflow_id, "nodes": list(nodes), **fields}


def exact(value: Any) -> bytes:
    """JSON text of a value, so ``0``, ``False`` and ``0.0`` do not compare equal."""
    return msgspec.json.encode(value)


def statuses(execution: spane.Execution) -> dict[str, str]:
    return {node_id: state.status for node_id, state in execution.nodes.items()}


def wait_for_node(execution_id: str, node_id: str, status: str) -> spane.Execution:
    """Poll until a node reaches ``status`` (fails the test after a few seconds)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        execution = spane.get_execution(execution_id)
        if execution.nodes[node_id].status == status:
            return execution
        time.sleep(0.01)
    pytest.fail(f"node {node_id} never became {status}: {statuses(execution)}")


# -- data passing ----------------------------------------------------------------------


def test_entry_node_receives_the_execution_input(rt: Runtime) -> None:
    payload = {"order": 7, "items": ["a", "b"]}
    done = spane.run(workflow("entry", node("a", "echo")), payload, timeout=TIMEOUT)
    assert done.status == "completed"
    assert done.nodes["a"].output == payload
    assert done.output == payload


def test_one_parent_passes_its_output(rt: Runtime) -> None:
    definition = workflow(
        "chain", node("a", "add_one"), node("b", "add_one", "a"), node("c", "add_one", "b")
    )
    done = spane.run(definition, 1, timeout=TIMEOUT)
    assert [done.nodes[n].output for n in "abc"] == [2, 3, 4]
    assert done.output == 4


def test_several_parents_pass_a_mapping_of_their_outputs(rt: Runtime) -> None:
    definition = workflow(
        "join",
        node("a", "add_one"),
        node("b", "echo"),
        node("j", "echo", "a", "b"),
    )
    done = spane.run(definition, 10, timeout=TIMEOUT)
    assert done.nodes["j"].output == {"a": 11, "b": 10}
    assert done.output == {"a": 11, "b": 10}


@pytest.mark.parametrize("value", FALSY, ids=repr)
def test_falsy_outputs_are_preserved_exactly(rt: Runtime, value: Any) -> None:
    definition = workflow(
        "falsy-chain",
        node("f", "falsy", config={"value": value}),
        node("e1", "echo", "f"),
        node("e2", "echo", "e1"),
    )
    done = spane.run(definition, "ignored", timeout=TIMEOUT)
    assert done.status == "completed"
    for node_id in ("f", "e1", "e2"):
        assert exact(done.nodes[node_id].output) == exact(value)
    assert exact(done.output) == exact(value)


def test_falsy_outputs_are_preserved_in_joins_and_execution_output(rt: Runtime) -> None:
    falsy_nodes = [node(f"f{i}", "falsy", config={"value": v}) for i, v in enumerate(FALSY)]
    expected = {f"f{i}": v for i, v in enumerate(FALSY)}
    definition = workflow(
        "falsy-join",
        *falsy_nodes,
        node("j", "echo", *expected),
        # Several final nodes: the execution output maps each to its output.
        node("j2", "echo", *expected),
    )
    done = spane.run(definition, None, timeout=TIMEOUT)
    assert exact(done.nodes["j"].output) == exact(expected)
    assert exact(done.output) == exact({"j": expected, "j2": expected})


# -- joins, branches and routes --------------------------------------------------------


def _branching(default: list[str]) -> dict[str, Any]:
    return workflow(
        "branchy",
        node("start", "echo"),
        node(
            "route",
            "branch",
            "start",
            config={
                "cases": [
                    {"when": "x > `10`", "next": ["big"]},
                    {"when": "x > `0`", "next": ["small"]},
                ],
                "default": default,
            },
        ),
        node("big", "echo", "route"),
        node("small", "echo", "route"),
        node("other", "echo", "route"),
    )


@pytest.mark.parametrize(
    ("x", "chosen"),
    [(50, "big"), (5, "small"), (-1, "other")],
    ids=["first-case-wins", "second-case", "default"],
)
def test_branch_runs_the_first_matching_case_else_default(rt: Runtime, x: int, chosen: str) -> None:
    done = spane.run(_branching(["other"]), {"x": x}, timeout=TIMEOUT)
    assert done.status == "completed"
    assert done.nodes["route"].output == {"x": x}
    for name in ("big", "small", "other"):
        assert done.nodes[name].status == ("completed" if name == chosen else "skipped")
    assert done.nodes[chosen].output == {"x": x}


def test_branch_with_no_match_and_empty_default_skips_every_successor(rt: Runtime) -> None:
    done = spane.run(_branching([]), {"x": -1}, timeout=TIMEOUT)
    assert done.status == "completed"
    assert {n: done.nodes[n].status for n in ("big", "small", "other")} == dict.fromkeys(
        ("big", "small", "other"), "skipped"
    )


def test_skipping_is_transitive_and_a_join_runs_with_the_completed_parent_only(
    rt: Runtime,
) -> None:
    definition = workflow(
        "transitive",
        node(
            "route",
            "branch",
            config={"cases": [{"when": "go", "next": ["yes"]}], "default": ["no"]},
        ),
        node("yes", "echo", "route"),
        node("no", "echo", "route"),
        node("no2", "echo", "no"),
        node("no3", "echo", "no2"),
        node("both_skipped", "echo", "no", "no2"),
        node("join", "echo", "yes", "no3"),
    )
    done = spane.run(definition, {"go": True}, timeout=TIMEOUT)
    assert done.status == "completed"
    assert statuses(done) == {
        "route": "completed",
        "yes": "completed",
        "no": "skipped",
        "no2": "skipped",
        "no3": "skipped",
        "both_skipped": "skipped",
        "join": "completed",
    }
    assert done.nodes["join"].output == {"yes": {"go": True}}


def test_route_from_a_user_node_runs_only_the_named_successors(rt: Runtime) -> None:
    definition = workflow(
        "routed",
        node("r", "router", config={"next": ["b", "c"]}),
        node("a", "echo", "r"),
        node("b", "echo", "r"),
        node("c", "add_one", "r"),
        node("after_a", "echo", "a"),
    )
    done = spane.run(definition, 1, timeout=TIMEOUT)
    assert done.status == "completed"
    assert statuses(done) == {
        "r": "completed",
        "a": "skipped",
        "b": "completed",
        "c": "completed",
        "after_a": "skipped",
    }
    assert done.nodes["r"].output == 1
    assert done.output == {"b": 1, "c": 2}


def test_route_naming_a_non_successor_fails_the_node_clearly(rt: Runtime) -> None:
    definition = workflow(
        "misrouted",
        node("r", "router", config={"next": ["b", "nowhere"]}),
        node("b", "echo", "r"),
        node("elsewhere", "echo"),
    )
    done = spane.run(definition, 1, timeout=TIMEOUT)
    assert done.status == "failed"
    assert done.nodes["r"].status == "failed"
    error = done.nodes["r"].error or ""
    assert "nowhere" in error
    assert "successor" in error
    assert "'r'" in (done.error or "")
    assert done.nodes["b"].status == "cancelled"


# -- shapes ------------------------------------------------------------------------------


def test_several_root_nodes_all_start(rt: Runtime) -> None:
    definition = workflow(
        "roots",
        node("r1", "echo"),
        node("r2", "add_one"),
        node("r3", "falsy", config={"value": "third"}),
        node("j", "echo", "r1", "r2", "r3"),
    )
    done = spane.run(definition, 5, timeout=TIMEOUT)
    assert done.status == "completed"
    assert all(done.nodes[r].status == "completed" for r in ("r1", "r2", "r3"))
    assert done.output == {"r1": 5, "r2": 6, "r3": "third"}


def test_diamond(rt: Runtime) -> None:
    definition = workflow(
        "diamond",
        node("a", "add_one"),
        node("b", "add_one", "a"),
        node("c", "echo", "a"),
        node("d", "echo", "b", "c"),
    )
    done = spane.run(definition, 1, timeout=TIMEOUT)
    assert done.status == "completed"
    assert done.output == {"b": 3, "c": 2}


def test_fan_out_and_fan_in_of_a_hundred(rt: Runtime) -> None:
    width = [f"n{i:03d}" for i in range(100)]
    definition = workflow(
        "fan",
        node("root", "echo"),
        *(node(n, "add_one", "root") for n in width),
        node("join", "echo", *width),
    )
    done = spane.run(definition, 1, timeout=TIMEOUT)
    assert done.status == "completed"
    assert done.output == dict.fromkeys(width, 2)
    assert all(state.attempts == 1 for state in done.nodes.values())


# -- retries and timeouts ----------------------------------------------------------------


def test_default_policy_is_three_attempts_with_exponential_backoff(rt: Runtime) -> None:
    # ``stamp_fail`` has no type-level policy: the default applies (3 attempts, 1s doubling).
    done = spane.run(workflow("defaults", node("s", "stamp_fail")), None, timeout=TIMEOUT)
    assert done.status == "failed"
    assert done.nodes["s"].attempts == 3
    assert done.nodes["s"].error == "stamped failure"
    starts = test_nodes.ATTEMPT_STARTS[(done.id, "s")]
    assert len(starts) == 3
    # Lower bounds only (10% slack): waits of 1s then 2s.
    assert starts[1] - starts[0] >= 0.9
    assert starts[2] - starts[1] >= 1.8


def test_node_level_retry_overrides_the_type_level_policy(rt: Runtime) -> None:
    # ``fail`` declares 3 attempts at the type level.
    definition = workflow(
        "override",
        node("more", "fail", retry={"max_attempts": 5, "delay": "10ms"}),
        node("fewer", "fail", retry={"max_attempts": 1}, continue_on_fail=True),
        node("typed", "fail", continue_on_fail=True),
    )
    done = spane.run(definition, None, timeout=TIMEOUT)
    assert done.nodes["more"].attempts == 5
    assert done.nodes["fewer"].attempts == 1
    assert done.nodes["typed"].attempts == 3


def test_node_level_exponential_backoff_spacing(rt: Runtime) -> None:
    retry = {"max_attempts": 4, "backoff": "exponential", "delay": "100ms"}
    done = spane.run(
        workflow("spacing", node("s", "stamp_fail", retry=retry)), None, timeout=TIMEOUT
    )
    assert done.nodes["s"].attempts == 4
    starts = test_nodes.ATTEMPT_STARTS[(done.id, "s")]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    for gap, expected in zip(gaps, (0.1, 0.2, 0.4), strict=True):
        assert gap >= expected * 0.9


def test_non_retryable_failure_fails_at_once(rt: Runtime) -> None:
    definition = workflow("at-once", node("f", "fail", config={"retryable": False}))
    done = spane.run(definition, None, timeout=TIMEOUT)
    assert done.status == "failed"
    assert done.nodes["f"].attempts == 1
    assert done.nodes["f"].status == "failed"


def test_entry_node_retries_until_it_succeeds(rt: Runtime) -> None:
    definition = workflow(
        "entry-retry", node("f", "fail", config={"times": 2}), node("after", "echo", "f")
    )
    done = spane.run(definition, {"k": 1}, timeout=TIMEOUT)
    assert done.status == "completed"
    assert done.nodes["f"].attempts == 3
    assert done.nodes["f"].status == "completed"
    assert done.output == {"attempt": 3, "input": {"k": 1}}


def test_inner_node_retries_and_receives_its_input_again(rt: Runtime) -> None:
    definition = workflow(
        "inner-retry", node("a", "add_one"), node("f", "fail", "a", config={"times": 1})
    )
    done = spane.run(definition, 1, timeout=TIMEOUT)
    assert done.status == "completed"
    assert done.nodes["f"].attempts == 2
    assert done.output == {"attempt": 2, "input": 2}


def test_an_attempt_over_its_timeout_fails_and_is_retried(rt: Runtime) -> None:
    definition = workflow(
        "timeouts",
        node(
            "s",
            "spin",
            config={"seconds": 5},
            timeout="200ms",
            retry={"max_attempts": 2, "delay": "10ms"},
        ),
    )
    started = time.monotonic()
    done = spane.run(definition, None, timeout=TIMEOUT)
    assert done.status == "failed"
    assert done.nodes["s"].status == "failed"
    assert done.nodes["s"].attempts == 2
    error = done.nodes["s"].error or ""
    assert "timed out" in error
    assert "0.2s" in error
    assert "timed out" in (done.error or "")
    # Both attempts were cut short: far less than the 2 x 5 s the node would spin.
    assert time.monotonic() - started < 9


# -- failure policy ----------------------------------------------------------------------


def test_continue_on_fail_passes_the_error_as_output(rt: Runtime) -> None:
    definition = workflow(
        "carry-on",
        node(
            "f",
            "fail",
            config={"retryable": False, "message": "boom"},
            continue_on_fail=True,
        ),
        node("next", "echo", "f"),
    )
    done = spane.run(definition, None, timeout=TIMEOUT)
    assert done.status == "completed"
    assert done.nodes["f"].status == "failed"
    assert done.nodes["f"].output == {"error": "boom"}
    assert done.nodes["next"].status == "completed"
    assert done.output == {"error": "boom"}


def test_continue_on_fail_output_appears_in_a_several_final_node_output(rt: Runtime) -> None:
    definition = workflow(
        "carry-on-many",
        node("f", "fail", config={"retryable": False, "message": "boom"}, continue_on_fail=True),
        node("ok", "echo"),
    )
    done = spane.run(definition, 3, timeout=TIMEOUT)
    assert done.status == "completed"
    assert done.output == {"f": {"error": "boom"}, "ok": 3}


def test_continue_on_fail_single_final_node_output_is_the_error(rt: Runtime) -> None:
    definition = workflow(
        "carry-on-last",
        node("a", "echo"),
        node(
            "f", "fail", "a", config={"retryable": False, "message": "boom"}, continue_on_fail=True
        ),
    )
    done = spane.run(definition, None, timeout=TIMEOUT)
    assert done.status == "completed"
    assert done.nodes["f"].output == {"error": "boom"}
    assert done.output == {"error": "boom"}


def test_failure_fails_the_execution_and_cancels_nodes_not_started(rt: Runtime) -> None:
    definition = workflow(
        "fails",
        node("bad", "fail", config={"retryable": False, "message": "kaput"}),
        node("below", "echo", "bad"),
        node("below2", "echo", "below"),
        node("slow", "sleep", config={"seconds": 0.5}),
        node("after_slow", "echo", "slow"),
    )
    done = spane.run(definition, None, timeout=TIMEOUT)
    assert done.status == "failed"
    assert "'bad'" in (done.error or "")
    assert "kaput" in (done.error or "")
    assert done.nodes["bad"].status == "failed"
    for name in ("below", "below2", "after_slow"):
        assert done.nodes[name].status == "cancelled", name
    # The running node is not cancelled under it, and nothing after it is started later.
    time.sleep(0.8)
    later = spane.get_execution(done.id)
    assert later.status == "failed"
    assert later.nodes["after_slow"].status == "cancelled"


# -- completion ------------------------------------------------------------------------


def test_completion_is_detected_exactly_once(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    ended: Counter[tuple[str, str]] = Counter()
    original = rt.store.execution_row.end

    def counting(conn: Any, execution_id: str, status: str, *args: Any, **kwargs: Any) -> None:
        ended[(execution_id, status)] += 1
        original(conn, execution_id, status, *args, **kwargs)

    monkeypatch.setattr(rt.store.execution_row, "end", counting)
    sinks = [f"s{i:02d}" for i in range(30)]
    definition = workflow(
        "many-sinks", node("root", "echo"), *(node(s, "echo", "root") for s in sinks)
    )
    done = spane.run(definition, "x", timeout=TIMEOUT)
    assert done.status == "completed"
    assert done.output == dict.fromkeys(sinks, "x")
    time.sleep(0.2)
    assert ended == Counter({(done.id, "completed"): 1})
    assert done.finished_at is not None


def test_execution_output_of_a_single_final_node_is_its_output(rt: Runtime) -> None:
    definition = workflow(
        "single-sink", node("a", "echo"), node("b", "echo"), node("z", "echo", "a", "b")
    )
    done = spane.run(definition, [1, 2], timeout=TIMEOUT)
    assert done.output == {"a": [1, 2], "b": [1, 2]}
    assert done.output == done.nodes["z"].output


# -- delay -------------------------------------------------------------------------------


def test_delay_node_waits_then_completes(rt: Runtime) -> None:
    definition = workflow(
        "delayed", node("d", "delay", config={"duration": "600ms"}), node("after", "echo", "d")
    )
    spane.register_workflow(definition)
    started = time.monotonic()
    execution_id = spane.enqueue_workflow("delayed", {"v": 1})
    during = wait_for_node(execution_id, "d", "waiting")
    assert during.status == "running"
    assert during.nodes["after"].status == "pending"
    done = spane.wait(execution_id, timeout=TIMEOUT)
    elapsed = time.monotonic() - started
    assert done.status == "completed"
    assert done.nodes["d"].status == "completed"
    assert done.output == {"v": 1}
    assert elapsed >= 0.6
    assert done.finished_at is not None
    assert done.finished_at - done.created_at >= 0.59


# -- versions ----------------------------------------------------------------------------


def test_register_returns_the_same_version_for_the_same_definition(rt: Runtime) -> None:
    first = workflow("versioned", node("a", "echo"), node("b", "echo", "a"))
    assert spane.register_workflow(first) == ("versioned", 1)
    assert spane.register_workflow(first) == ("versioned", 1)
    # Key order and spelt-out defaults do not make a new version.
    reordered = {"nodes": [dict(reversed(n.items())) for n in first["nodes"]], "id": "versioned"}
    reordered["lane"] = "default"
    assert spane.register_workflow(reordered) == ("versioned", 1)
    changed = workflow("versioned", node("a", "echo"), node("b", "add_one", "a"))
    assert spane.register_workflow(changed) == ("versioned", 2)
    assert spane.register_workflow(changed) == ("versioned", 2)
    assert spane.register_workflow(first) == ("versioned", 3)


def test_an_execution_is_pinned_to_the_version_it_started_with(rt: Runtime) -> None:
    old = workflow(
        "pinned",
        node("hold", "delay", config={"duration": "500ms"}),
        node("a", "falsy", "hold", config={"value": "v1"}),
    )
    new = workflow(
        "pinned",
        node("hold", "delay", config={"duration": "10ms"}),
        node("b", "falsy", "hold", config={"value": "v2"}),
        node("c", "echo", "b"),
    )
    assert spane.register_workflow(old) == ("pinned", 1)
    execution_id = spane.enqueue_workflow("pinned", None)
    wait_for_node(execution_id, "hold", "waiting")
    assert spane.register_workflow(new) == ("pinned", 2)
    done = spane.wait(execution_id, timeout=TIMEOUT)
    assert done.status == "completed"
    assert done.version == 1
    assert set(done.nodes) == {"hold", "a"}
    assert done.output == "v1"
    fresh = spane.run("pinned", None, timeout=TIMEOUT)
    assert fresh.version == 2
    assert set(fresh.nodes) == {"hold", "b", "c"}
    assert fresh.output == "v2"
