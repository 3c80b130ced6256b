"""The ``spane`` command, run in-process on the embedded runtime (and once as a subprocess)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import spane
from spane import runtime as runtime_module
from spane.cli import main
from spane.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``spane argv...``; return the exit code, stdout and stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(folder: Path, name: str, definition: dict[str, Any]) -> str:
    path = folder / name
    path.write_text(yaml.safe_dump(definition), encoding="utf-8")
    return str(path)


ANSWER = {
    "id": "answer",
    "nodes": [
        {"id": "inc", "type": "add_one"},
        {"id": "wrap", "type": "transform", "after": ["inc"], "config": {"expression": "{n: @}"}},
    ],
}
DOOMED = {
    "id": "doomed",
    "nodes": [
        {"id": "ok", "type": "echo"},
        {"id": "boom", "type": "fail", "after": ["ok"], "config": {"retryable": False}},
        {"id": "never", "type": "echo", "after": ["boom"]},
    ],
}
SLOW = {"id": "slow", "nodes": [{"id": "nap", "type": "delay", "config": {"duration": "30s"}}]}


# -- demo and run ------------------------------------------------------------------------


def test_demo_completes_and_prints_its_output(
    rt: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "demo")
    assert code == 0
    assert '"route": "manual review"' in out
    assert '"tracking": "SPX-' in out
    assert "completed in" in out
    (summary,) = spane.list_executions(workflow_id="spane-demo")
    execution = spane.get_execution(summary.id)
    assert execution.status == "completed"
    assert execution.nodes["ship_fast"].status == "skipped"  # the branch chose review
    assert execution.nodes["wait_for_pickup"].type == "delay"
    assert execution.nodes["book_courier"].attempts == 2  # failed once, then retried
    assert runtime_module.current() is rt  # the CLI used, and left, the installed runtime


def test_run_json_prints_only_the_execution(
    rt: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "answer.yaml", ANSWER)
    code, out, _ = cli(capsys, "run", path, "--input", "41", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["status"] == "completed"
    assert result["output"] == {"n": 42}
    assert result["nodes"]["inc"] == result["nodes"]["inc"] | {"status": "completed", "attempts": 1}


def test_run_without_json_shows_nodes_and_output(
    rt: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "answer.yaml", ANSWER)
    code, out, _ = cli(capsys, "run", path, "--input", "1")
    assert code == 0
    assert "answer v1" in out
    assert "inc" in out and "add_one" in out and "wrap" in out
    assert '"n": 2' in out


def test_run_live_view_on_an_interactive_terminal(
    rt: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("TTY_INTERACTIVE", "1")
    path = write(tmp_path, "answer.yaml", ANSWER)
    code, out, _ = cli(capsys, "run", path, "--input", "1")
    assert code == 0
    assert "\x1b[" in out  # drawn with terminal codes
    assert "completed in" in out


def test_run_input_from_a_file(
    rt: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "answer.yaml", ANSWER)
    (tmp_path / "input.json").write_text("99", encoding="utf-8")
    code, out, _ = cli(capsys, "run", path, "--input", f"@{tmp_path / 'input.json'}", "--json")
    assert code == 0
    assert json.loads(out)["output"] == {"n": 100}


@pytest.mark.parametrize(
    ("value", "message"),
    [("{oops", "--input is not valid JSON"), ("@/no/such/file.json", "cannot read input file")],
)
def test_bad_input_exits_2_with_a_clear_message(
    rt: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, message: str
) -> None:
    path = write(tmp_path, "answer.yaml", ANSWER)
    code, out, err = cli(capsys, "run", path, "--input", value)
    assert code == 2
    assert out == ""
    assert message in err
    assert "Traceback" not in err
    assert spane.list_executions() == []


def test_input_refused_by_the_schema_exits_2(
    rt: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = {"type": "object", "required": ["order_id"]}
    path = write(tmp_path, "strict.yaml", {**ANSWER, "input_schema": schema})
    code, _, err = cli(capsys, "run", path, "--input", "{}")
    assert code == 2
    assert "input.order_id" in err


def test_failing_workflow_exits_1(
    rt: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "doomed.yaml", DOOMED)
    code, out, _ = cli(capsys, "run", path)
    assert code == 1
    assert "planned failure" in out
    assert "failed in" in out


def test_run_timeout_exits_1_and_says_it_is_still_running(
    rt: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "slow.yaml", SLOW)
    code, _, err = cli(capsys, "run", path, "--timeout", "200ms")
    assert code == 1
    assert "did not end within 0.2s" in err


def test_definition_error_on_run_exits_2(
    rt: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "bad.yaml", {"id": "bad", "nodes": [{"id": "a", "type": "nope"}]})
    code, out, err = cli(capsys, "run", path)
    assert code == 2
    assert out == ""
    assert "nodes[0].type: unknown node type 'nope'" in err
    assert "spane -m MODULE" in err  # the hint for unknown node types


# -- validate and register --------------------------------------------------------------


def test_validate_lists_every_problem_with_its_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = {
        "id": "Bad Id",
        "nodes": [
            {"id": "a", "type": "echo", "timeout": "soon"},
            {"id": "b", "type": "no_such_type", "after": ["a"]},
            {"id": "c", "type": "echo", "after": ["ghost"]},
            {"id": "a", "type": "echo", "colour": "red"},
        ],
    }
    code, out, _ = cli(capsys, "validate", write(tmp_path, "bad.yaml", bad))
    assert code == 1
    lines = out.splitlines()
    assert "problem(s)" in lines[0]
    for path in ("id", "nodes[0].timeout", "nodes[1].type", "nodes[2].after[0]", "nodes[3].id"):
        assert any(line.strip().startswith(f"{path}: ") for line in lines), path


def test_validate_ok_prints_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import tests.nodes  # noqa: F401  (registers add_one)

    code, out, _ = cli(capsys, "validate", write(tmp_path, "answer.yaml", ANSWER))
    assert code == 0
    assert out.strip().endswith("workflow 'answer' is valid (2 nodes)")
    assert len(out.splitlines()) == 1


def test_register_reports_new_and_unchanged_versions(
    rt: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "answer.yaml", ANSWER)
    assert cli(capsys, "register", path)[1].strip() == "answer version 1 (new version)"
    code, out, _ = cli(capsys, "register", path)
    assert code == 0
    assert out.startswith("answer version 1 (unchanged")
    write(tmp_path, "answer.yaml", {**ANSWER, "description": "now documented"})
    assert cli(capsys, "register", path)[1].strip() == "answer version 2 (new version)"


# -- start, wait, status, list, cancel -------------------------------------------------


def test_start_wait_and_status(
    rt: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli(capsys, "register", write(tmp_path, "answer.yaml", ANSWER))
    code, out, _ = cli(capsys, "start", "answer", "--input", "1", "--idempotency-key", "k1")
    assert code == 0
    execution_id = out.strip()
    again = cli(capsys, "start", "answer", "--input", "1", "--idempotency-key", "k1", "--json")
    assert json.loads(again[1]) == {"execution_id": execution_id}  # the same execution
    code, out, _ = cli(capsys, "wait", execution_id, "--timeout", "10")
    assert code == 0
    assert '"n": 2' in out
    code, out, _ = cli(capsys, "status", execution_id, "--json")
    assert code == 0
    status = json.loads(out)
    assert status["id"] == execution_id
    assert status["status"] == "completed"
    assert status["output"] == {"n": 2}
    assert set(status["nodes"]) == {"inc", "wrap"}
    code, out, _ = cli(capsys, "status", execution_id)
    assert code == 0 and "wrap" in out and "completed" in out


def test_list_json_filters(rt: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    answer = write(tmp_path, "answer.yaml", ANSWER)
    cli(capsys, "run", answer, "--input", "1", "--tenant", "acme")
    cli(capsys, "run", answer, "--input", "2")
    cli(capsys, "run", write(tmp_path, "doomed.yaml", DOOMED))

    def listed(*filters: str) -> list[dict[str, Any]]:
        code, out, _ = cli(capsys, "list", "--json", *filters)
        assert code == 0
        rows: list[dict[str, Any]] = json.loads(out)
        return rows

    assert len(listed()) == 3
    assert {r["workflow_id"] for r in listed("--workflow", "answer")} == {"answer"}
    assert len(listed("--workflow", "answer")) == 2
    assert [r["workflow_id"] for r in listed("--status", "failed")] == ["doomed"]
    assert [r["tenant"] for r in listed("--tenant", "acme")] == ["acme"]
    assert len(listed("--limit", "1")) == 1
    code, out, _ = cli(capsys, "list")
    assert code == 0 and "doomed" in out and "acme" in out


def test_cancel(rt: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli(capsys, "register", write(tmp_path, "slow.yaml", SLOW))
    execution_id = cli(capsys, "start", "slow")[1].strip()
    code, out, _ = cli(capsys, "cancel", execution_id)
    assert code == 0
    assert out.strip() == f"cancelled {execution_id}"
    assert spane.get_execution(execution_id).status == "cancelled"
    assert cli(capsys, "wait", execution_id)[0] == 1
    code, _, err = cli(capsys, "cancel", execution_id)
    assert code == 1
    assert "already cancelled" in err


def test_unknown_execution_exits_2(rt: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "status", "no-such-id")
    assert code == 2
    assert out == ""
    assert "no execution has id 'no-such-id'" in err


# -- usage, examples, database ----------------------------------------------------------


def test_usage_errors_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "frobnicate")
    assert code == 2
    assert "usage: spane" in err
    assert cli(capsys, "list", "--limit", "0")[0] == 2
    code, out, _ = cli(capsys, "--version")
    assert code == 0
    assert out.strip() == f"spane {spane.__version__}"


def test_example_order_workflow(rt: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    import examples.nodes

    importlib.reload(examples.nodes)  # other tests may have registered a fetch_order of theirs
    order = str(ROOT / "examples" / "order.yaml")
    code, out, _ = cli(capsys, "-m", "examples.nodes", "validate", order)
    assert code == 0, out
    code, out, _ = cli(capsys, "run", order, "--input", '{"order_id": "A-7"}', "--json")
    assert code == 0, out
    result = json.loads(out)
    assert result["output"]["message"] == "Order A-7 is on its way (express)."
    assert result["nodes"]["fraud_hold"]["status"] == "skipped"


def test_db_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "fresh" / "spane.db"
    monkeypatch.setenv("SPANE_DATABASE_URL", f"sqlite:///{database}")
    code, out, _ = cli(capsys, "db", "upgrade")
    assert code == 0
    assert "is up to date" in out
    assert database.exists()


def test_demo_as_a_subprocess_uses_the_embedded_default(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANE_", "TTY_", "FORCE_"))}
    done = subprocess.run(
        [sys.executable, "-m", "spane.cli", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "completed in" in done.stdout
    assert (tmp_path / ".spane" / "spane.db").is_file()


def test_huge_output_is_cut_short() -> None:
    from spane.cli import render

    text = render.value({"rows": list(range(10_000))}).plain
    assert len(text.splitlines()) == render.OUTPUT_MAX_LINES + 1
    assert text.endswith("more characters (see --json for all)")
    assert render.value({"a": 1}).plain == '{\n  "a": 1\n}'


def test_lanes_shows_each_lanes_ready_work_per_tenant(
    prod: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    # A client runtime and no worker: what is enqueued stays ready.
    spane.register_workflow(ANSWER)
    for _ in range(2):
        spane.enqueue_workflow("answer", 1, tenant="acme", priority="low")
    spane.enqueue_workflow("answer", 1, tenant="beta", priority="high")
    code, out, _ = cli(capsys, "lanes", "--json")
    assert code == 0
    lanes = {lane["lane"]: lane for lane in json.loads(out)}
    assert list(lanes) == ["high", "default", "low"]
    assert lanes["default"]["tenants"] == [] and lanes["low"]["workers"] == 0
    (beta,) = lanes["high"]["tenants"]
    (acme,) = lanes["low"]["tenants"]
    assert (beta["tenant"], beta["ready"], beta["in_flight"]) == ("beta", 1, 0)
    assert (acme["tenant"], acme["ready"], acme["in_flight"]) == ("acme", 2, 0)
    assert 0 <= acme["oldest_wait"] < 60
    code, out, _ = cli(capsys, "lanes", "--tenant", "acme")
    assert code == 0
    assert "acme" in out and "beta" not in out and "none" in out
