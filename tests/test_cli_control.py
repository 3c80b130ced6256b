"""Control commands of ``spane``: pause, resume, replay, rerun, history, dlq, gc and status.

Run in-process on the embedded runtime: the worker shares this module, so the flaky node
type below is steered by flipping ``FLAKY`` from the test.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import spane
from spane.cli import main
from spane.runtime import Runtime

FLAKY = {"broken": True}


@spane.node_type("cli_flaky_ctl3f9", retry={"max_attempts": 1})
def cli_flaky(ctx: spane.NodeContext) -> Any:
    """Fail while ``FLAKY["broken"]``; pass the input on once fixed."""
    if FLAKY["broken"]:
        raise spane.NodeFailed("cli flaky node is broken")
    return {"fixed": ctx.input}


@pytest.fixture(autouse=True)
def broken() -> Iterator[None]:
    FLAKY["broken"] = True
    yield
    FLAKY["broken"] = True


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``spane argv...``; return the exit code, stdout and stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def register(capsys: pytest.CaptureFixture[str], folder: Path, definition: dict[str, Any]) -> None:
    path = folder / f"{definition['id']}.yaml"
    path.write_text(yaml.safe_dump(definition), encoding="utf-8")
    code, out, err = cli(capsys, "register", str(path))
    assert code == 0, out + err


def start(capsys: pytest.CaptureFixture[str], workflow_id: str, value: Any = None) -> str:
    code, out, err = cli(capsys, "start", workflow_id, "--input", json.dumps(value), "--json")
    assert code == 0, out + err
    execution_id: str = json.loads(out)["execution_id"]
    return execution_id


def wait_for(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def node_status(execution_id: str, node_id: str) -> str:
    return spane.get_execution(execution_id).nodes[node_id].status


NAPPING = {
    "id": "cli_napping",
    "nodes": [
        {"id": "nap", "type": "delay", "config": {"duration": "1s"}},
        {"id": "after", "type": "echo", "after": ["nap"]},
    ],
}
SHAKY = {
    "id": "cli_shaky",
    "nodes": [
        {"id": "first", "type": "echo"},
        {"id": "shaky", "type": "cli_flaky_ctl3f9", "after": ["first"]},
        {"id": "last", "type": "echo", "after": ["shaky"]},
    ],
}
PAIR = {
    "id": "cli_pair",
    "nodes": [{"id": "a", "type": "echo"}, {"id": "b", "type": "add_one", "after": ["a"]}],
}
ECHO = {"id": "cli_echo", "nodes": [{"id": "copy", "type": "echo"}]}


def failed_shaky(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> str:
    """Run SHAKY while its node is broken; return the failed execution's id."""
    register(capsys, tmp_path, SHAKY)
    execution_id = start(capsys, "cli_shaky", {"n": 1})
    assert cli(capsys, "wait", execution_id, "--timeout", "10")[0] == 1
    assert node_status(execution_id, "shaky") == "failed"
    return execution_id


# -- pause and resume --------------------------------------------------------------------


def test_pause_then_resume_completes(
    rt: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    register(capsys, tmp_path, NAPPING)
    execution_id = start(capsys, "cli_napping", {"k": "v"})
    wait_for(lambda: node_status(execution_id, "nap") == "waiting", "the timer to park")
    code, out, _ = cli(capsys, "status", execution_id)
    assert code == 0 and "waiting for timer" in out

    code, out, _ = cli(capsys, "pause", execution_id)
    assert code == 0
    assert out.strip() == f"paused {execution_id}"
    code, out, _ = cli(capsys, "status", execution_id)
    assert code == 0
    assert "‖ paused" in out.splitlines()[0]
    assert json.loads(cli(capsys, "status", execution_id, "--json")[1])["status"] == "paused"
    code, _, err = cli(capsys, "pause", execution_id)
    assert code == 1 and "only a running execution can be paused" in err

    time.sleep(1.3)  # the timer falls due while paused: nothing after it may start
    execution = spane.get_execution(execution_id)
    assert execution.status == "paused"
    assert execution.nodes["after"].status in ("pending", "queued")

    code, out, _ = cli(capsys, "resume", execution_id)
    assert code == 0
    assert out.strip() == f"resumed {execution_id}"
    code, out, _ = cli(capsys, "wait", execution_id, "--timeout", "10", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["status"] == "completed"
    assert result["output"] == {"k": "v"}
    code, _, err = cli(capsys, "resume", execution_id)
    assert code == 1 and "only a paused execution can be resumed" in err


def test_pause_unknown_execution_exits_2(rt: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "pause", "no-such-id")
    assert code == 2 and out == ""
    assert "no execution has id 'no-such-id'" in err and "Traceback" not in err


# -- replay and rerun --------------------------------------------------------------------


def test_replay_a_failed_execution_after_fixing_the_node(
    rt: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    execution_id = failed_shaky(capsys, tmp_path)
    code, _, err = cli(capsys, "replay", execution_id, "--from", "ghost")
    assert code == 2
    assert "has no node 'ghost'" in err and "first, shaky, last" in err

    FLAKY["broken"] = False
    code, out, _ = cli(capsys, "replay", execution_id, "--wait", "--timeout", "10", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["id"] == execution_id
    assert result["status"] == "completed"
    assert result["output"] == {"fixed": {"n": 1}}
    assert result["nodes"]["first"]["attempts"] == 1  # upstream output was kept

    code, _, err = cli(capsys, "replay", execution_id)
    assert code == 1
    assert "only a failed or cancelled execution can be replayed" in err

    code, out, _ = cli(capsys, "replay", execution_id, "--from", "last", "--wait")
    assert code == 0
    assert out.startswith(f"replaying {execution_id}: from node last")
    assert "completed in" in out


def test_rerun_starts_a_new_execution_with_the_same_input(
    rt: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    register(capsys, tmp_path, PAIR)
    first = start(capsys, "cli_pair", 41)
    assert cli(capsys, "wait", first, "--timeout", "10")[0] == 0

    code, out, _ = cli(capsys, "rerun", first)
    assert code == 0
    new_id = out.strip()
    assert new_id and new_id != first and len(out.splitlines()) == 1
    code, out, _ = cli(capsys, "wait", new_id, "--timeout", "10", "--json")
    assert code == 0
    again = json.loads(out)
    assert again["input"] == 41 and again["output"] == 42
    assert again["workflow_id"] == "cli_pair"

    code, out, _ = cli(capsys, "rerun", first, "--wait", "--json")
    assert code == 0
    third = json.loads(out)
    assert third["id"] not in (first, new_id)
    assert third["status"] == "completed" and third["output"] == 42
    assert len(spane.list_executions(workflow_id="cli_pair")) == 3


# -- history -----------------------------------------------------------------------------


def test_history_lists_events_in_order(
    rt: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    register(capsys, tmp_path, PAIR)
    execution_id = start(capsys, "cli_pair", 1)
    assert cli(capsys, "wait", execution_id, "--timeout", "10")[0] == 0

    code, out, _ = cli(capsys, "history", execution_id, "--json")
    assert code == 0
    events = json.loads(out)
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    steps = [(e["node_id"], e["kind"]) for e in events if e["kind"] in ("started", "completed")]
    assert steps == [("a", "started"), ("a", "completed"), ("b", "started"), ("b", "completed")]
    assert events[-1]["node_id"] is None and events[-1]["kind"] == "execution_completed"
    assert {e["execution_id"] for e in events} == {execution_id}

    code, out, _ = cli(capsys, "history", execution_id)
    assert code == 0
    lines = out.splitlines()
    assert execution_id in lines[0] and f"{len(events)} events" in lines[0]
    assert lines[1].split() == ["time", "node", "kind", "attempt", "detail"]
    rows = [line.split() for line in lines[2:]]
    assert len(rows) == len(events)
    assert rows[0][0] == "+0.000s"
    assert all(row[0].startswith("+") and row[0].endswith("s") for row in rows)
    shown = [(row[1], row[2]) for row in rows if row[2] in ("started", "completed")]
    assert shown == steps
    assert rows[-1][1:3] == ["execution", "execution_completed"]

    assert cli(capsys, "history", "no-such-id")[0] == 2


def test_history_shows_the_failure(
    rt: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    execution_id = failed_shaky(capsys, tmp_path)
    code, out, _ = cli(capsys, "history", execution_id)
    assert code == 0
    failed = [line for line in out.splitlines() if " failed " in f" {line} "]
    assert failed and "shaky" in failed[0] and "cli flaky node is broken" in failed[0]


# -- dead letters ------------------------------------------------------------------------


def test_dlq_list_show_and_retry(
    rt: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "dlq", "list")
    assert code == 0 and out.strip() == "no open dead letters"
    execution_id = failed_shaky(capsys, tmp_path)

    code, out, _ = cli(capsys, "dlq", "list", "--json")
    assert code == 0
    (letter,) = json.loads(out)
    assert letter["kind"] == "node" and letter["status"] == "open"
    assert letter["execution_id"] == execution_id and letter["node_id"] == "shaky"
    assert "cli flaky node is broken" in letter["reason"]
    letter_id = letter["id"]

    code, out, _ = cli(capsys, "dlq", "list")
    assert code == 0
    row = out.splitlines()[1].split()
    assert row[:5] == [str(letter_id), "node", execution_id, "/", "shaky"]
    assert "cli flaky node is broken" in out and row[-1] == "open"

    code, out, _ = cli(capsys, "dlq", "show", str(letter_id))
    assert code == 0
    assert out.startswith(f"dead letter {letter_id}")
    for text in (execution_id, "shaky", "cli_flaky_ctl3f9", "reason", "message"):
        assert text in out
    shown = json.loads(cli(capsys, "dlq", "show", str(letter_id), "--json")[1])
    assert shown == letter

    FLAKY["broken"] = False
    code, out, _ = cli(capsys, "dlq", "retry", str(letter_id))
    assert code == 0
    assert f"node shaky of execution {execution_id} runs again" in out
    assert f"spane wait {execution_id}" in out
    code, out, _ = cli(capsys, "wait", execution_id, "--timeout", "10", "--json")
    assert code == 0
    assert json.loads(out)["output"] == {"fixed": {"n": 1}}

    assert cli(capsys, "dlq", "list")[1].strip() == "no open dead letters"
    code, out, _ = cli(capsys, "dlq", "list", "--all", "--json")
    assert [(d["id"], d["status"]) for d in json.loads(out)] == [(letter_id, "retried")]
    code, _, err = cli(capsys, "dlq", "retry", str(letter_id))
    assert code == 1 and "already retried" in err


def test_dlq_show_and_retry_of_an_unknown_id_exit_2(
    rt: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in ("show", "retry"):
        code, out, err = cli(capsys, "dlq", command, "999")
        assert code == 2 and out == ""
        assert "no dead letter has id 999" in err and "Traceback" not in err
    assert cli(capsys, "dlq", "show", "abc")[0] == 2


# -- gc ----------------------------------------------------------------------------------


def test_gc_removes_old_executions_and_their_blobs(
    rt: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    register(capsys, tmp_path, ECHO)
    big = {"payload": "x" * 60_000}  # over the claim-check threshold: stored as a blob
    execution_id = start(capsys, "cli_echo", big)
    assert cli(capsys, "wait", execution_id, "--timeout", "10")[0] == 0

    code, out, _ = cli(capsys, "gc", "--older-than", "30d")
    assert code == 0
    assert out.startswith("removed 0 executions") and "0 blobs (0 B)" in out
    assert cli(capsys, "status", execution_id)[0] == 0

    code, out, _ = cli(capsys, "gc", "--older-than", "0s", "--grace", "0s", "--json")
    assert code == 0
    removed = json.loads(out)
    assert removed["executions"] == 1
    assert removed["blobs"] >= 1 and removed["blob_bytes"] > 51_200
    code, out, err = cli(capsys, "status", execution_id)
    assert code == 2 and out == ""
    assert f"no execution has id '{execution_id}'" in err

    code, out, _ = cli(capsys, "gc", "--older-than", "0s", "--grace", "0s")
    assert code == 0 and "removed 0 executions" in out


@pytest.mark.parametrize("argv", [["--older-than", "soon"], ["--older-than", "1d", "--grace", "x"]])
def test_gc_bad_duration_exits_2(
    rt: Runtime, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, err = cli(capsys, "gc", *argv)
    assert code == 2 and out == ""
    assert "expected a duration like '500ms', '30s', '10m', '1h' or '2d'" in err
    assert cli(capsys, "gc")[0] == 2  # --older-than is required


# -- status of parked nodes and sub-workflows ----------------------------------------------


def test_status_shows_parent_children_and_what_parked_nodes_wait_for(
    rt: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inner = {
        "id": "cli_inner",
        "nodes": [{"id": "hold", "type": "delay", "config": {"duration": "30s"}}],
    }
    outer = {
        "id": "cli_outer",
        "nodes": [{"id": "call", "type": "subworkflow", "config": {"workflow": "cli_inner"}}],
    }
    register(capsys, tmp_path, inner)
    register(capsys, tmp_path, outer)
    parent_id = start(capsys, "cli_outer", {})
    wait_for(lambda: len(spane.get_execution(parent_id).children) == 1, "the child to start")
    (child_id,) = spane.get_execution(parent_id).children
    wait_for(lambda: node_status(child_id, "hold") == "waiting", "the child's timer to park")
    wait_for(lambda: node_status(parent_id, "call") == "waiting", "the parent to park")

    code, out, _ = cli(capsys, "status", parent_id)
    assert code == 0
    assert f"waiting for child {child_id}" in out
    assert f"children: {child_id}" in out
    code, out, _ = cli(capsys, "status", child_id)
    assert code == 0
    assert f"parent {parent_id} (node call)" in out
    assert "waiting for timer" in out and "children" not in out

    assert cli(capsys, "cancel", parent_id)[0] == 0
    assert spane.get_execution(child_id).status == "cancelled"
